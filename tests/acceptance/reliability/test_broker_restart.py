"""RabbitMQ restarted under load (on a private node): workers and the scheduler reconnect
by themselves, every persistent message published before the restart is processed once,
and the tick due during the outage is still dispatched (sent late by the scheduler's
retry; an outage longer than its 45 s patience is left to the next tick's catch-up, which
tests/unit/test_dispatch.py covers)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.reliability.conftest import Figures, executions, record, scalar
from tests.acceptance.reliability.private_rabbitmq import PrivateRabbitMQ, start_private_rabbitmq
from tests.support.processes import ProcessStarter
from tests.support.waiting import wait_for


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbitMQ]:
    node = start_private_rabbitmq()
    yield node
    node.stop()


def _seconds_to_next_minute() -> float:
    return 60 - time.time() % 60


def test_rabbitmq_restart_under_load_loses_and_duplicates_nothing(
    tmp_path: Path,
    rabbit: PrivateRabbitMQ,
    broker_env: dict[str, str],
    start_process: ProcessStarter,
    soak: bool,
) -> None:
    from tickwork.settings import load_settings
    from workers.app import build_runtime

    runtime = build_runtime(load_settings(broker_env))
    total = 1_000 if soak else 200
    quick, slow = tmp_path / "quick", tmp_path / "slow"
    # Given a worker and the scheduler on the broker, and persistent messages: many short
    # jobs and a few long ones that will be running when the broker goes away (their
    # redelivery must not run them twice),
    worker = start_process("worker", broker_env)
    scheduler = start_process("scheduler", broker_env)
    actor = runtime.broker.get_actor("rel_work")
    # and the outage timed to span a minute boundary, so one tick cannot be published,
    if _seconds_to_next_minute() < 14:
        time.sleep(_seconds_to_next_minute() + 1)
    time.sleep(max(0.0, _seconds_to_next_minute() - 12))
    for _ in range(3):
        actor.send(seconds=35.0, marker=str(slow))
    for _ in range(total):
        actor.send(seconds=0.05, marker=str(quick))
    wait_for(lambda: len(executions(slow)) == 3, 30, "long jobs started", processes=[worker])
    time.sleep(max(0.0, _seconds_to_next_minute() - 4))
    # when RabbitMQ's application is stopped for 10 s and started again,
    rabbit.stop_app()
    stopped_at = time.monotonic()
    missed_minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(
        minutes=1
    )
    time.sleep(10)
    rabbit.start_app()
    # then every message is processed: each run succeeded, in one record, executed once;
    wait_for(
        lambda: (
            scalar(
                runtime,
                "SELECT count(*) FROM job_runs WHERE job_name='rel_work' AND status='succeeded'",
            )
            >= total + 3
        ),
        180,
        "all rel_work runs succeeded after the restart",
        processes=[worker, scheduler],
    )
    recovery_s = time.monotonic() - stopped_at
    records = scalar(runtime, "SELECT count(*) FROM job_runs WHERE job_name='rel_work'")
    executed = executions(quick) + executions(slow)
    duplicated = len(executed) - len(set(executed)) + max(0, records - (total + 3))
    stuck = scalar(
        runtime,
        "SELECT count(*) FROM job_runs WHERE status IN ('running', 'queued')"
        " AND job_name='rel_work'",
    )
    # and the scheduler reconnected: the tick of the minute that began during the outage
    # was sent once the broker was back (the scheduler retries a failed publish for 45 s;
    # past that, the next tick would catch the slot up), and nothing ran twice.
    wait_for(
        lambda: (
            scalar(
                runtime,
                "SELECT count(*) FROM job_runs "
                "WHERE job_name='rel_minutely' AND scheduled_for >= :m",
                m=missed_minute,
            )
            >= 1
        ),
        60,
        "the tick of the outage's minute",
        processes=[worker, scheduler],
    )
    slots = scalar(
        runtime,
        "SELECT count(*) FROM job_runs WHERE job_name='rel_minutely' AND scheduled_for >= :m",
        m=missed_minute,
    )
    distinct_slots = scalar(
        runtime,
        "SELECT count(DISTINCT scheduled_for) FROM job_runs WHERE job_name='rel_minutely'",
    )
    all_slots = scalar(runtime, "SELECT count(*) FROM job_runs WHERE job_name='rel_minutely'")
    assert worker.poll() is None, "the worker process died"
    assert scheduler.poll() is None, "the scheduler process died"
    record(
        Figures(
            "restart RabbitMQ under load",
            total + 3,
            lost=total + 3 - len(set(executed)),
            duplicated=duplicated + (all_slots - distinct_slots),
            stuck=stuck,
            max_recovery_s=recovery_s,
        )
    )
    runtime.broker.close()
    runtime.db.dispose()
    assert len(set(executed)) == total + 3
    assert duplicated == 0 and stuck == 0
    assert all_slots == distinct_slots
    assert slots >= 1, "the minute whose tick fell in the outage was never dispatched"
    assert "delivered again while it is still running" in worker.output(), (
        "long jobs not redelivered?"
    )
