"""Real RabbitMQ + PostgreSQL: ticks in, runs out, each exactly once."""

from __future__ import annotations

import time
from typing import Any

from dramatiq import Worker
from sqlalchemy import select

from schema.base import utcnow
from schema.scheduling import JobRun
from tests.conftest import FERNET_KEY
from tickwork.contracts import TICK
from tickwork.schedules import floor_minute
from tickwork.settings import load_settings
from workers.app import build_runtime
from workers.scheduler import control


def _wait(predicate: Any, timeout_s: float = 20) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _runtime(pg_db: Any, amqp_url: str, queue_prefix: str) -> Any:
    settings = load_settings(
        {
            "TICKWORK_DATABASE_URL": pg_db.engine.url.render_as_string(hide_password=False),
            "TICKWORK_FERNET_KEY": FERNET_KEY,
            "TICKWORK_BROKER_URL": amqp_url,
            "TICKWORK_QUEUE_PREFIX": queue_prefix,
        }
    )
    return build_runtime(settings, pg_db)


def test_duplicate_ticks_through_rabbitmq_run_the_heartbeat_once(
    pg_db: Any, amqp_url: str, queue_prefix: str
) -> None:
    # Given a worker consuming from RabbitMQ,
    runtime = _runtime(pg_db, amqp_url, queue_prefix)
    worker = Worker(runtime.broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        # when the same minute's tick is published three times (two schedulers, a restart),
        minute = floor_minute(utcnow()).isoformat()
        tick = runtime.broker.get_actor(TICK)
        for _ in range(3):
            tick.send_with_options(scheduled_at=minute)

        def heartbeat_runs() -> list[JobRun]:
            with pg_db.session() as s:
                return list(s.scalars(select(JobRun).where(JobRun.job_name == "heartbeat")))

        _wait(lambda: any(r.status == "succeeded" for r in heartbeat_runs()))
        time.sleep(1.0)  # give any duplicate a chance to show up
        # then the heartbeat ran once for that minute, recorded in PostgreSQL.
        (run,) = heartbeat_runs()
        assert run.status == "succeeded" and run.scheduled_for is not None
        assert run.worker and run.published_at is not None
    finally:
        worker.stop()
        runtime.broker.close()


def test_manual_trigger_through_rabbitmq(pg_db: Any, amqp_url: str, queue_prefix: str) -> None:
    runtime = _runtime(pg_db, amqp_url, queue_prefix)
    worker = Worker(runtime.broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        run_id = control.trigger(pg_db, runtime.broker, "heartbeat")

        def status() -> str:
            with pg_db.session() as s:
                run = s.get(JobRun, run_id)
                return run.status if run else "missing"

        _wait(lambda: status() == "succeeded")
    finally:
        worker.stop()
        runtime.broker.close()
