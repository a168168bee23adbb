"""The scheduler-behaviour ``system`` on real PostgreSQL + RabbitMQ."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from dramatiq import Worker
from sqlalchemy import func, select

from schema.scheduling import JobRun
from tests.conftest import FERNET_KEY
from tickwork.settings import load_settings
from workers.app import build_runtime


@dataclass
class ServiceSystem:
    runtime: Any
    worker: Any

    @property
    def db(self) -> Any:
        return self.runtime.db

    @property
    def broker(self) -> Any:
        return self.runtime.broker

    def drain(self, timeout_s: float = 30) -> None:
        """Wait until no run is queued or running (steady for half a second)."""
        deadline = time.time() + timeout_s
        quiet_since = None
        while time.time() < deadline:
            with self.db.session() as s:
                busy = s.scalar(
                    select(func.count())
                    .select_from(JobRun)
                    .where(JobRun.status.in_(("queued", "running")))
                )
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.time()
            elif time.time() - quiet_since > 0.5:
                return
            time.sleep(0.05)
        raise AssertionError("runs still queued or running after drain timeout")


@pytest.fixture
def system(pg_db: Any, amqp_url: str, queue_prefix: str) -> Iterator[ServiceSystem]:
    settings = load_settings(
        {
            "TICKWORK_DATABASE_URL": pg_db.engine.url.render_as_string(hide_password=False),
            "TICKWORK_FERNET_KEY": FERNET_KEY,
            "TICKWORK_BROKER_URL": amqp_url,
            "TICKWORK_QUEUE_PREFIX": queue_prefix,
            "TICKWORK_MIN_BACKOFF_MS": "10",
            "TICKWORK_MAX_BACKOFF_MS": "50",
        }
    )
    runtime = build_runtime(settings, pg_db)
    worker = Worker(runtime.broker, worker_timeout=100, worker_threads=2)
    worker.start()
    yield ServiceSystem(runtime, worker)
    worker.stop()
    runtime.broker.close()
