"""Exactly-once dispatch on PostgreSQL under real concurrency."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from sqlalchemy import func, select

from schema.base import utcnow
from schema.scheduling import JobRun
from tests.conftest import service_settings
from tests.support.throwaway_jobs import ThrowawayJobs
from tickwork.schedules import floor_minute
from workers.app import build_runtime
from workers.scheduler.dispatcher import advance_watermark, dispatch


def test_racing_dispatchers_and_duplicate_ticks_record_each_slot_once(
    pg_db: Any, tj: ThrowawayJobs
) -> None:
    # Given eight dispatchers (two schedulers, redelivered and re-sent ticks) racing
    # over the same ten minutes of ticks on one PostgreSQL database,
    settings = service_settings(pg_db)  # no broker URL: the StubBroker
    runtime = build_runtime(settings, pg_db)
    start = floor_minute(utcnow()) - dt.timedelta(minutes=10)
    advance_watermark(pg_db, start - dt.timedelta(seconds=1))
    jobs = {
        **tj.scheduled("t_count", overlap="allow"),
        **tj.scheduled("t_silent", "0 */2 * * * *", overlap="allow"),
    }
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def scheduler() -> None:
        try:
            barrier.wait()
            for minute in range(10):
                dispatch(pg_db, runtime.broker, start + dt.timedelta(minutes=minute), jobs=jobs)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scheduler) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # then each slot has exactly one run, none is missing, and one message per run was sent.
    with pg_db.session() as s:
        rows = s.execute(
            select(JobRun.job_name, JobRun.scheduled_for, func.count()).group_by(
                JobRun.job_name, JobRun.scheduled_for
            )
        ).all()
    counts = {(name, slot): n for name, slot, n in rows}
    assert all(n == 1 for n in counts.values())
    assert sum(1 for name, _ in counts if name == "t_count") == 10
    assert sum(1 for name, _ in counts if name == "t_silent") == 5
    queue = runtime.broker.queues[settings.queue("default")]
    delayed = runtime.broker.queues.get(settings.queue("default") + ".DQ")
    assert queue.qsize() + (delayed.qsize() if delayed else 0) == 15
