"""Fixtures of the acceptance tests (``start_process`` is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from producers.client import InstallClient
from tests.conftest import run_tickwork, services_env
from tickwork.settings import load_settings
from workers.app import build_runtime


@pytest.fixture
def install_services(
    tmp_path: Path, pg_url: str, amqp_url: str, queue_prefix: str
) -> Iterator[tuple[dict[str, str], Any, InstallClient]]:
    """``(env, runtime, client)``: the settings of `tickwork worker` processes running
    installs on PostgreSQL (migrated, install tables emptied) and RabbitMQ; this process
    on the same, and an install client on it."""
    env = services_env(
        pg_url,
        amqp_url,
        queue_prefix,
        TICKWORK_WORKER_PROCESSES="1",
        TICKWORK_WORKER_THREADS="2",
        TICKWORK_WORKER_SHUTDOWN_TIMEOUT_S="20",
    )
    migrated = run_tickwork("migrate", cwd=tmp_path, **env)
    assert migrated.returncode == 0, migrated.stderr
    settings = load_settings(env)
    runtime = build_runtime(settings)
    with runtime.db.engine.begin() as conn:  # a clean slate for this test's rows
        conn.execute(
            text("TRUNCATE jobs, plans, products, versions, users RESTART IDENTITY CASCADE")
        )
    client = InstallClient(runtime.db, runtime.broker, settings)
    yield env, runtime, client
    runtime.broker.close()
    runtime.db.dispose()
