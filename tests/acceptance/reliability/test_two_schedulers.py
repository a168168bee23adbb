"""Two schedulers for a simulated day: both publish every minute's tick (as two scheduler
replicas would), two real worker processes dispatch them, and each job's slots are run
exactly once — none missed, none twice.

periodiq's wall clock is the one thing replaced: the ticks are driven fast by a simulated
clock (one minute per round), each publisher on its own broker connection, both sending
the same minute before the clock moves on, as two replicas do every minute.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from croniter import croniter
from sqlalchemy import text

from tests.acceptance.reliability.conftest import Figures, record, scalar
from tests.support.processes import Process
from tests.support.waiting import wait_for

JOB_MODULE = "tests.acceptance.reliability.simulated_jobs"

DAY_START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:  # extends the suite's env
    return {
        **env,
        "TICKWORK_JOB_MODULES": JOB_MODULE,
        # the simulated day is in the past: its ticks must not count as late
        "TICKWORK_TICK_SKIP_AFTER_S": str(10**9),
    }


def expected_slots(schedule: str, start: dt.datetime, end: dt.datetime) -> set[dt.datetime]:
    """The independent oracle: croniter's fire times in [start, end)."""
    fields = schedule.split()
    second_first = len(fields) == 6  # Barycenter's form: seconds first; croniter's: last
    expression = " ".join(fields[1:] + fields[:1]) if second_first else schedule
    it = croniter(expression, start - dt.timedelta(seconds=1), second_at_beginning=False)
    slots = set()
    while (fire := it.get_next(dt.datetime)) < end:
        slots.add(fire.astimezone(dt.UTC))
    return slots


def test_two_schedulers_for_a_simulated_day_run_each_slot_once(
    env: dict[str, str],
    runtime: Any,
    workers: Callable[[], Process],
    soak: bool,
) -> None:
    # (imported here, not at collection: importing it declares the simulated jobs; the
    # `runtime` fixture has imported it already, as the worker processes do)
    from tests.acceptance.reliability.simulated_jobs import SCHEDULES
    from tickwork.contracts import TICK
    from tickwork.settings import load_settings
    from workers.app import build_runtime
    from workers.scheduler import control

    minutes = 24 * 60 if soak else 3 * 60
    end = DAY_START + dt.timedelta(minutes=minutes)
    # Given only the simulated jobs enabled (the built-in ones would run real maintenance),
    from workers.registry import all_jobs

    for name in all_jobs():
        if name not in SCHEDULES:
            control.set_enabled(runtime.db, name, False)
    # two worker processes, and two tick publishers, each on its own connection,
    procs = [workers(), workers()]
    publishers = [build_runtime(load_settings(env)) for _ in range(2)]
    started = time.monotonic()
    # when both publish every minute of the simulated day, the clock moving on only once
    # the minute is dispatched (as a real minute would be long over),
    # (each publisher is one long-lived thread: Dramatiq keeps a connection per thread)
    start_minute, minute_sent = threading.Barrier(3), threading.Barrier(3)
    failures: list[BaseException] = []

    def publisher(rt: Any) -> None:
        for m in range(minutes):
            start_minute.wait()  # the same minute from both, at the same moment
            try:
                at = DAY_START + dt.timedelta(minutes=m)
                rt.broker.get_actor(TICK).send_with_options(scheduled_at=at.isoformat())
            except BaseException as exc:
                failures.append(exc)
            minute_sent.wait()

    threads = [threading.Thread(target=publisher, args=(rt,), daemon=True) for rt in publishers]
    for t in threads:
        t.start()
    for m in range(minutes):
        minute = DAY_START + dt.timedelta(minutes=m)
        start_minute.wait()
        minute_sent.wait()
        assert not failures, failures
        done = minute + dt.timedelta(seconds=59)
        wait_for(
            lambda d=done: (
                (scalar(runtime, "SELECT dispatched_until FROM scheduler_state") or DAY_START) >= d
            ),
            60,
            f"minute {minute:%H:%M} dispatched",
            processes=procs,
        )
    for t in threads:
        t.join(10)
    # then, once the runs are done, every expected slot has exactly one run record,
    wait_for(
        lambda: (
            scalar(runtime, "SELECT count(*) FROM job_runs WHERE status IN ('queued', 'running')")
            == 0
        ),
        120,
        "all runs finished",
        processes=procs,
    )
    elapsed_s = time.monotonic() - started
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT job_name, scheduled_for, status FROM job_runs WHERE job_name LIKE 'sim_%'")
        ).all()
    missed = duplicated = 0
    report = []
    for name, schedule in SCHEDULES.items():
        expected = expected_slots(schedule, DAY_START, end)
        got = [r.scheduled_for.astimezone(dt.UTC) for r in rows if r.job_name == name]
        missed += len(expected - set(got))
        duplicated += len(got) - len(set(got)) + len(set(got) - expected)
        report.append(f"{name}: expected {len(expected)}, got {len(got)}")
    statuses = {r.status for r in rows}
    stuck = scalar(runtime, "SELECT count(*) FROM job_runs WHERE status IN ('queued', 'running')")
    alive = all(p.poll() is None for p in procs)
    for rt in publishers:
        rt.broker.close()
        rt.db.dispose()
    record(
        Figures(
            f"two schedulers, simulated {minutes // 60} h",
            minutes * 2,
            missed,
            duplicated,
            stuck,
            elapsed_s,
        )
    )
    assert (missed, duplicated, stuck) == (0, 0, 0), report
    # Each succeeded run of a chained job queued exactly one run of its chain.
    with runtime.db.engine.connect() as conn:
        chained = conn.execute(
            text(
                "SELECT p.id, count(c.id) FROM job_runs p LEFT JOIN job_runs c "
                "ON c.triggered_by = p.id AND c.job_name = 'sim_chained' "
                "WHERE p.job_name = 'sim_every_7_minutes' AND p.status = 'succeeded' "
                "GROUP BY p.id"
            )
        ).all()
    assert chained and {count for _id, count in chained} == {1}, chained
    # and the runs ran (skipped only by the overlap policy, never failed), workers alive.
    assert statuses <= {"succeeded", "skipped"}, statuses
    assert alive
