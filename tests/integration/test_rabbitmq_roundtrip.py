"""Real RabbitMQ + PostgreSQL: ticks in, runs out, each exactly once."""

from __future__ import annotations

import time

from sqlalchemy import select

from schema.base import utcnow
from schema.scheduling import JobRun
from tests.support.systems import Services
from tests.support.waiting import wait_for
from tickwork.contracts import TICK
from tickwork.schedules import floor_minute
from workers.scheduler import control


def test_duplicate_ticks_through_rabbitmq_run_the_heartbeat_once(services: Services) -> None:
    # Given a worker consuming from RabbitMQ,
    # when the same minute's tick is published three times (two schedulers, a restart),
    minute = floor_minute(utcnow()).isoformat()
    tick = services.broker.get_actor(TICK)
    for _ in range(3):
        tick.send_with_options(scheduled_at=minute)

    def heartbeat_runs() -> list[JobRun]:
        with services.db.session() as s:
            return list(s.scalars(select(JobRun).where(JobRun.job_name == "heartbeat")))

    wait_for(
        lambda: any(r.status == "succeeded" for r in heartbeat_runs()), 20, "heartbeat succeeded"
    )
    time.sleep(1.0)  # give any duplicate a chance to show up
    # then the heartbeat ran once for that minute, recorded in PostgreSQL.
    (run,) = heartbeat_runs()
    assert run.status == "succeeded" and run.scheduled_for is not None
    assert run.worker and run.published_at is not None


def test_manual_trigger_through_rabbitmq(services: Services) -> None:
    # Given a worker consuming from RabbitMQ, when the heartbeat is triggered by hand,
    run_id = control.trigger(services.db, services.broker, "heartbeat")

    def status() -> str:
        with services.db.session() as s:
            run = s.get(JobRun, run_id)
            return run.status if run else "missing"

    # then it runs to success.
    wait_for(lambda: status() == "succeeded", 20, f"manual run {run_id} succeeded")
