"""The run lifecycle (docs/RUN_LIFECYCLE.md): no run is left queued or running past its
deadline, and overlap is judged on runs that can still run (given / when / then).

Each test runs on SQLite + StubBroker and on PostgreSQL + RabbitMQ (the ``system``
fixture).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import pytest
from sqlalchemy import select

from schema.base import utcnow
from schema.scheduling import JobRun
from tests.support.systems import System, add_run
from tests.support.throwaway_jobs import ThrowawayJobs
from tests.support.waiting import wait_for
from tickwork.errors import JobBusyError
from tickwork.schedules import floor_minute
from workers.context import JobResult, RunContext
from workers.registry import job, unregister
from workers.scheduler import control
from workers.scheduler.dispatcher import dispatch


def runs(system: System, name: str) -> list[JobRun]:
    with system.db.session() as s:
        return list(s.scalars(select(JobRun).where(JobRun.job_name == name).order_by(JobRun.id)))


def run(system: System, run_id: int) -> JobRun:
    with system.db.session() as s:
        found = s.get(JobRun, run_id)
        assert found is not None
        return found


# --- defect 1: a queued run whose message is lost never blocks its job ------------------
def test_a_run_whose_message_is_dropped_as_too_old_is_failed_with_the_reason(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a queued scheduled run whose message is older than the age limit,
    minute = floor_minute(utcnow())
    run_id = add_run(
        system.db,
        "t_count",
        trigger="schedule",
        status="queued",
        scheduled_for=minute - dt.timedelta(minutes=1),
        message_id="m-too-old",
        published_at=utcnow(),
    )
    old_ms = int((utcnow() - dt.timedelta(days=2)).timestamp() * 1000)
    message = (
        system.broker.get_actor("t_count")
        .message_with_options(kwargs={"run_id": run_id})
        .copy(message_id="m-too-old", message_timestamp=old_ms)
    )
    # when a worker receives it (Dramatiq's AgeLimit drops it unprocessed),
    system.broker.enqueue(message)
    system.drain()
    # then the run is failed, saying why, the job never ran,
    dropped = run(system, run_id)
    assert dropped.status == "failed" and dropped.finished_at is not None
    assert "age limit" in (dropped.error or "")
    assert tj.calls == []
    # and the job's next slot runs (it is not skipped as "still queued").
    dispatch(system.db, system.broker, minute, jobs=tj.scheduled("t_count"))
    system.drain()
    assert runs(system, "t_count")[-1].status == "succeeded"


def test_a_queued_run_whose_message_never_arrives_expires_and_unblocks_the_job(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a run published longer ago than the message age limit, its message gone
    # (sent to another broker, or the queue purged),
    age_limit_s = system.db.settings.message_age_limit_s
    long_ago = utcnow() - dt.timedelta(seconds=age_limit_s + 120)
    lost = add_run(
        system.db,
        "t_count",
        trigger="manual",
        status="queued",
        queued_at=long_ago,
        published_at=long_ago,
        message_id="m-lost",
    )
    # when the next tick comes,
    minute = floor_minute(utcnow())
    report = dispatch(system.db, system.broker, minute, jobs=tj.scheduled("t_count"))
    system.drain()
    # then the lost run is failed as expired, naming the age limit,
    expired = run(system, lost)
    assert expired.status == "failed" and "expired" in (expired.error or "")
    assert str(age_limit_s) in (expired.error or "")
    assert lost in report.expired
    # and the slot of this minute ran instead of being skipped behind it.
    (slot,) = [r for r in runs(system, "t_count") if r.scheduled_for == minute]
    assert slot.status == "succeeded"


def test_overlap_ignores_a_running_run_whose_worker_is_gone(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a run left "running" by a worker that died a minute ago (heartbeat stale,
    # still inside its time limit, so not yet reaped),
    a_minute_ago = utcnow() - dt.timedelta(seconds=60)
    add_run(
        system.db,
        "t_count",
        trigger="manual",
        status="running",
        started_at=a_minute_ago,
        heartbeat_at=a_minute_ago,
        attempts=1,
    )
    # when the job's next slot is dispatched,
    minute = floor_minute(utcnow())
    dispatch(system.db, system.broker, minute, jobs=tj.scheduled("t_count"))

    # then the slot runs: a run that provably cannot progress does not block it.
    def slot_status() -> str | None:
        found = [r.status for r in runs(system, "t_count") if r.scheduled_for == minute]
        return found[0] if found else None

    wait_for(lambda: slot_status() not in (None, "queued", "running"), 20, "the slot finished")
    assert slot_status() == "succeeded"


# --- defect 3: run now means now, and says what it does while a run is going -----------
@pytest.fixture
def jittery() -> object:
    """A job with 30 s of jitter on its scheduled runs."""

    @job(description="test: jittered", jitter_s=30)
    def t_jittery(ctx: object) -> int:
        return 1

    yield t_jittery
    unregister("t_jittery")


def test_run_now_is_not_delayed_by_the_jobs_jitter(jittery: object, system: System) -> None:
    # Given a job with 30 s of jitter, when it is run now,
    run_id = control.trigger(system.db, system.broker, "t_jittery")
    # then it has run within a few seconds (jitter spreads schedules, not manual runs).
    wait_for(lambda: run(system, run_id).status == "succeeded", 8, "the manual run finished")


@pytest.fixture
def unstorable_output() -> object:
    """A job whose output and error hold what PostgreSQL cannot store in text."""

    @job(description="test: prints a NUL and a lone surrogate", max_retries=0)
    def t_unstorable(ctx: RunContext, fail: bool = False) -> JobResult:
        ctx.log("before\x00after \ud800 end")
        if fail:
            raise RuntimeError("bad byte \x00 in \udfff the error")
        return JobResult(output="result \x00")

    yield t_unstorable
    unregister("t_unstorable")


def test_output_the_database_cannot_store_is_recorded_escaped(
    unstorable_output: object, system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (Dramatiq logs the job's exception, surrogate and all: kept out of the captured log,
    # which pytest-xdist must send between processes as UTF-8.)
    monkeypatch.setattr(logging.getLogger("dramatiq.worker.WorkerThread"), "disabled", True)
    # Given a job whose output (and, failing, its error) holds a NUL and a lone surrogate,
    ok = control.trigger(system.db, system.broker, "t_unstorable")
    bad = control.trigger(
        system.db, system.broker, "t_unstorable", kwargs={"fail": True}, force=True
    )
    # when it runs, then both runs are recorded (not lost in a failed write), the
    # characters escaped where they were.
    wait_for(lambda: run(system, ok).status == "succeeded", 15, "the run recorded")
    wait_for(lambda: run(system, bad).status == "failed", 15, "the failed run recorded")
    assert "before\\x00after \\ud800 end" in run(system, ok).output
    assert "result \\x00" in run(system, ok).output
    assert "bad byte \\x00 in \\udfff the error" in (run(system, bad).error or "")


def test_run_now_while_a_run_is_going_is_refused_unless_forced(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a run of the job executing,
    first = control.trigger(system.db, system.broker, "t_slow")
    wait_for(lambda: tj.calls == ["t_slow"], 10, "t_slow running")
    # when the operator runs it now again, then it is refused, naming the run,
    with pytest.raises(JobBusyError, match=rf"run {first} of t_slow is running.*--force"):
        control.trigger(system.db, system.broker, "t_slow")
    assert [r.id for r in runs(system, "t_slow")] == [first]
    # and with force a second run starts right away, alongside the first.
    second = control.trigger(system.db, system.broker, "t_slow", force=True)
    wait_for(lambda: tj.calls == ["t_slow", "t_slow"], 10, "the forced run started")
    tj.release_slow.set()
    system.drain()
    assert run(system, second).status == "succeeded" and run(system, first).status == "succeeded"


def test_a_scheduled_slot_is_skipped_while_a_manual_run_is_going(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a manual run executing,
    control.trigger(system.db, system.broker, "t_slow")
    wait_for(lambda: tj.calls == ["t_slow"], 10, "t_slow running")
    # when the job's slot comes, then the slot is skipped (overlap: skip).
    minute = floor_minute(utcnow())
    dispatch(system.db, system.broker, minute, jobs=tj.scheduled("t_slow"))
    wait_for(lambda: any(r.status == "skipped" for r in runs(system, "t_slow")), 10, "slot skipped")
    tj.release_slow.set()
    system.drain()
    assert tj.calls == ["t_slow"]


# --- defect 5: overlap is judged when a slot is due, not when it is dispatched ---------
def test_sub_minute_slots_are_not_skipped_behind_their_own_queued_predecessors(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a job due every 2 seconds (a quick one), early enough in a minute for slots
    # to follow,
    if utcnow().second >= 45:
        time.sleep(61 - utcnow().second)
    now = utcnow()
    minute = floor_minute(now)
    # when the tick dispatches the minute (the later slots as delayed messages),
    dispatch(system.db, system.broker, minute, jobs=tj.scheduled("t_count", "*/2 * * * * *"))
    # then the slots that were still to come at dispatch each run when due.
    later = [now + dt.timedelta(seconds=s) for s in (2, 6)]

    def future_slots() -> list[JobRun]:
        return [
            r
            for r in runs(system, "t_count")
            if r.scheduled_for is not None and later[0] <= r.scheduled_for <= later[1]
        ]

    wait_for(
        lambda: future_slots() and all(r.status != "queued" for r in future_slots()),
        20,
        "the slots of the next few seconds finished",
    )
    assert {r.status for r in future_slots()} == {"succeeded"}, [
        (r.scheduled_for, r.status, r.skip_reason) for r in future_slots()
    ]


# --- defect 2: runs recorded by a process without workers are sent by the outbox ------
def test_a_run_recorded_without_a_broker_is_sent_by_the_outbox(
    system: System, tj: ThrowawayJobs
) -> None:
    from workers.scheduler.publish import republish_stranded

    # Given a run now recorded by a process that has no workers (the embedded CLI),
    run_id = control.trigger(system.db, None, "t_count")
    assert run(system, run_id).published_at is None
    # when the outbox of the process that has them makes its pass,
    sent = republish_stranded(system.broker, system.db, utcnow(), older_than_s=0)
    # then it is sent once and runs, and a second pass sends nothing.
    assert sent == 1
    assert republish_stranded(system.broker, system.db, utcnow(), older_than_s=0) == 0
    wait_for(lambda: run(system, run_id).status == "succeeded", 10, "the run finished")
    assert tj.calls == ["t_count"]
