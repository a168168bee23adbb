"""The dispatcher and operator controls (given / when / then).

Each test runs twice (the ``system`` fixture): on SQLite + StubBroker, and on PostgreSQL +
RabbitMQ (``[services]``, marked ``integration``): duplicate ticks, redelivered messages,
10 minutes of downtime under each catch-up policy, overlap, prechecks, retries, run now,
overrides, hold/release and reaping behave the same on both.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select

from schema.base import utcnow
from schema.scheduling import JobRun, ScheduledJobConfig
from tests.support.systems import System, add_run
from tests.support.throwaway_jobs import ThrowawayJobs
from tests.support.waiting import wait_for
from tickwork.errors import ScheduleError, UnknownJobError
from tickwork.schedules import floor_minute
from workers.scheduler import control
from workers.scheduler.dispatcher import advance_watermark, dispatch


def runs(system: System, name: str) -> list[JobRun]:
    with system.db.session() as s:
        return list(s.scalars(select(JobRun).where(JobRun.job_name == name).order_by(JobRun.id)))


def test_duplicate_ticks_run_a_slot_once(system: System, tj: ThrowawayJobs) -> None:
    # Given a job due every minute, when the same tick arrives three times,
    minute = floor_minute(utcnow())
    jobs = tj.scheduled("t_count")
    for _ in range(3):
        dispatch(system.db, system.broker, minute, jobs=jobs)
    system.drain()
    # then the slot ran once and its record says so.
    (run,) = runs(system, "t_count")
    assert run.scheduled_for == minute
    assert run.status == "succeeded" and run.records_processed == 3 and run.output == "counted 3"
    assert run.published_at is not None and run.attempts == 1
    assert tj.calls == ["t_count"]


def test_redelivered_message_for_a_finished_run_is_dropped(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a run that finished,
    minute = floor_minute(utcnow())
    dispatch(system.db, system.broker, minute, jobs=tj.scheduled("t_count"))
    system.drain()
    (run,) = runs(system, "t_count")
    # when the same message is delivered again,
    actor = system.broker.get_actor("t_count")
    message = actor.message_with_options(kwargs={"run_id": run.id}).copy(message_id=run.message_id)
    system.broker.enqueue(message)
    system.drain()
    # then the job did not run again.
    assert tj.calls == ["t_count"]
    assert runs(system, "t_count")[0].attempts == 1


def test_a_second_delivery_while_the_run_executes_is_deferred_not_run_twice(
    system: System, tj: ThrowawayJobs, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a run executing on a worker thread (its heartbeat fresh),
    from workers.metrics.job_metrics import job_metrics

    deferred = job_metrics().deferred.labels(job="t_slow")
    deferred_before = deferred._value.get()
    minute = floor_minute(utcnow())
    dispatch(system.db, system.broker, minute, jobs=tj.scheduled("t_slow"))
    wait_for(lambda: tj.calls == ["t_slow"], 20, "t_slow running")
    (run,) = runs(system, "t_slow")
    # when the broker delivers its message again (a restart, or consumer_timeout),
    actor = system.broker.get_actor("t_slow")
    message = actor.message_with_options(kwargs={"run_id": run.id}).copy(message_id=run.message_id)
    system.broker.enqueue(message)
    time.sleep(0.5)
    # then the second delivery does not start the job: it is put back for later, loudly,
    assert tj.calls == ["t_slow"]
    assert f"run {run.id} delivered again while it is still running" in caplog.text
    assert deferred._value.get() == deferred_before + 1  # and counted for dashboards
    # and the first delivery still records its outcome (the deferral did not close it).
    tj.release_slow.set()
    system.drain()
    (run,) = runs(system, "t_slow")
    assert run.status == "succeeded" and run.attempts == 1
    assert tj.calls == ["t_slow"]


@pytest.mark.parametrize(
    ("policy", "expected"), [("skip", ["schedule"]), ("once", ["catchup", "schedule"])]
)
def test_downtime_follows_the_catchup_policy(
    system: System, tj: ThrowawayJobs, policy: str, expected: list[str]
) -> None:
    # Given a scheduler that last dispatched 10 minutes ago,
    minute = floor_minute(utcnow())
    advance_watermark(system.db, minute - dt.timedelta(minutes=10, seconds=1))
    # when the next tick comes,
    report = dispatch(
        system.db, system.broker, minute, jobs=tj.scheduled("t_count", catchup=policy)
    )
    system.drain()
    # then missed minutes are never a flood: skip runs none of them, once runs one.
    assert [r.trigger for r in runs(system, "t_count")] == expected
    assert len(report.caught_up) == (1 if policy == "once" else 0)
    if policy == "once":
        assert runs(system, "t_count")[0].scheduled_for == minute - dt.timedelta(minutes=1)


def test_overlap_skip_records_a_skipped_run(system: System, tj: ThrowawayJobs) -> None:
    # Given a slow run still going,
    minute = floor_minute(utcnow())
    jobs = tj.scheduled("t_slow")
    dispatch(system.db, system.broker, minute - dt.timedelta(minutes=1), jobs=jobs)
    wait_for(lambda: tj.calls, 10, "t_slow running")
    # when its next slot comes,
    dispatch(system.db, system.broker, minute, jobs=jobs)
    tj.release_slow.set()
    system.drain()
    # then that slot is recorded as skipped, with the reason.
    first, second = runs(system, "t_slow")
    assert first.status == "succeeded"
    assert second.status == "skipped" and "still queued or running" in (second.skip_reason or "")
    assert tj.calls == ["t_slow"]


def test_overlap_allow_runs_both(system: System, tj: ThrowawayJobs) -> None:
    # Given a slow job that allows overlap, when its next slot comes while it runs,
    minute = floor_minute(utcnow())
    jobs = tj.scheduled("t_slow", overlap="allow")
    dispatch(system.db, system.broker, minute - dt.timedelta(minutes=1), jobs=jobs)
    dispatch(system.db, system.broker, minute, jobs=jobs)
    tj.release_slow.set()
    system.drain()
    # then both slots run.
    assert [r.status for r in runs(system, "t_slow")] == ["succeeded", "succeeded"]


def test_precheck_skip_is_recorded_as_last_skipped(system: System, tj: ThrowawayJobs) -> None:
    from admin.job_status import job_statuses

    # Given a job whose precheck finds nothing to do, when its slot comes,
    dispatch(system.db, system.broker, floor_minute(utcnow()), jobs=tj.scheduled("t_precheck"))
    system.drain()
    # then the run is recorded as skipped with the reason, the job never ran,
    (run,) = runs(system, "t_precheck")
    assert run.status == "skipped" and run.skip_reason == "nothing pending"
    assert tj.calls == []
    # and the job's status shows a last skip, not a last success.
    status = {s.name: s for s in job_statuses(system.db)}["t_precheck"]
    assert status.last_skip is not None and status.last_success is None


def test_failure_is_retried_then_failed_with_secrets_scrubbed(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a job that always fails (one retry), when its slot runs,
    dispatch(system.db, system.broker, floor_minute(utcnow()), jobs=tj.scheduled("t_fail"))
    system.drain()
    # then it is tried twice, then failed, the error recorded without the secret in it.
    (run,) = runs(system, "t_fail")
    assert tj.calls == ["t_fail", "t_fail"]  # max_retries=1
    assert run.status == "failed" and run.attempts == 2
    assert "RuntimeError" in (run.error or "") and "hunter2" not in (run.error or "")


def test_run_now_queues_a_manual_run(system: System) -> None:
    # When a job is run now (no slot),
    run_id = control.trigger(system.db, system.broker, "t_count")
    system.drain()
    # then a manual run is recorded, and it runs.
    (run,) = runs(system, "t_count")
    assert run.id == run_id and run.trigger == "manual" and run.scheduled_for is None
    assert run.status == "succeeded"


def test_unknown_job_is_named(system: System) -> None:
    # When a job that does not exist is triggered or disabled, then the error names it.
    with pytest.raises(UnknownJobError, match="no job named 'nope'"):
        control.trigger(system.db, system.broker, "nope")
    with pytest.raises(UnknownJobError):
        control.set_enabled(system.db, "nope", False)


def test_disabled_job_is_not_dispatched(system: System, tj: ThrowawayJobs) -> None:
    # Given a disabled job, when its slot comes,
    control.set_enabled(system.db, "t_count", False)
    dispatch(system.db, system.broker, floor_minute(utcnow()), jobs=tj.scheduled("t_count"))
    system.drain()
    # then it does not run.
    assert runs(system, "t_count") == []


def test_override_times_or_interval_never_both(system: System) -> None:
    # When an override gives both times and an interval, or a bad time, then it is refused
    with pytest.raises(ScheduleError, match="not both"):
        control.set_schedule_override(system.db, "t_count", times="02:00", interval="05:00")
    with pytest.raises(ScheduleError):
        control.set_schedule_override(system.db, "t_count", times="26:00")
    with system.db.session() as s:
        assert s.get(ScheduledJobConfig, "t_count") is None  # and nothing is saved;
    # when it gives an interval alone, then it is saved.
    control.set_schedule_override(system.db, "t_count", interval="05:00")
    with system.db.session() as s:
        config = s.get(ScheduledJobConfig, "t_count")
        assert config is not None and config.override_interval_s == 300


def test_database_refuses_both_overrides_too(system: System) -> None:
    from sqlalchemy.exc import IntegrityError

    # When both overrides are written around the checks, then the database refuses them.
    with pytest.raises(IntegrityError), system.db.session() as s:
        s.add(
            ScheduledJobConfig(job_name="t_count", override_times="02:00", override_interval_s=60)
        )


def test_override_replaces_the_default_schedule(system: System, tj: ThrowawayJobs) -> None:
    # Given an every-minute job overridden to run at a time five minutes from now,
    minute = floor_minute(utcnow())
    control.set_schedule_override(
        system.db, "t_count", times=(minute + dt.timedelta(minutes=5)).strftime("%H:%M")
    )
    # when this minute's tick comes, then it does not run.
    dispatch(system.db, system.broker, minute, jobs=tj.scheduled("t_count"))
    assert runs(system, "t_count") == []  # the every-minute default no longer applies


def test_hold_then_release_run_missed(system: System, tj: ThrowawayJobs) -> None:
    # Given jobs held for three ticks,
    minute = floor_minute(utcnow())
    jobs = tj.scheduled("t_count")
    dispatch(system.db, system.broker, minute - dt.timedelta(minutes=4), jobs=jobs)
    system.drain()
    control.hold(system.db)
    for back in (3, 2, 1):
        report = dispatch(system.db, system.broker, minute - dt.timedelta(minutes=back), jobs=jobs)
        assert report.held
    # when released with run-missed,
    from workers import registry

    original = registry.all_jobs
    registry_jobs = {**original(), **jobs}
    try:
        control.all_jobs = lambda: registry_jobs  # type: ignore[attr-defined]
        queued = control.release(system.db, system.broker, "run-missed")
    finally:
        control.all_jobs = original  # type: ignore[attr-defined]
    system.drain()
    # then the job ran once for everything it missed, not three times.
    assert "t_count" in queued
    assert [r.trigger for r in runs(system, "t_count")] == ["schedule", "catchup"]


def test_hold_then_release_reschedule(system: System, tj: ThrowawayJobs) -> None:
    # Given jobs held over a tick,
    minute = floor_minute(utcnow())
    jobs = tj.scheduled("t_count")
    control.hold(system.db)
    dispatch(system.db, system.broker, minute - dt.timedelta(minutes=2), jobs=jobs)
    # when released with reschedule, then nothing missed is queued,
    queued = control.release(system.db, system.broker, "reschedule")
    assert queued == []
    # and the next tick runs only its own slot.
    dispatch(system.db, system.broker, minute, jobs=jobs)
    system.drain()
    assert [r.scheduled_for for r in runs(system, "t_count")] == [minute]


def test_stale_running_run_is_reaped(system: System) -> None:
    # Given a run left running by a worker that vanished long ago,
    add_run(system.db, "t_count", status="running", started_at=utcnow() - dt.timedelta(hours=2))
    # when the next tick comes, then it is failed with the reason.
    report = dispatch(system.db, system.broker, floor_minute(utcnow()), jobs={})
    assert len(report.reaped) == 1
    (run,) = runs(system, "t_count")
    assert run.status == "failed" and "worker lost" in (run.error or "")


def test_a_broken_override_does_not_stop_other_jobs(system: System, tj: ThrowawayJobs) -> None:
    # Given one job whose stored override is unreadable (written around the CLI/API checks)
    minute = floor_minute(utcnow())
    with system.db.session() as s:
        s.add(ScheduledJobConfig(job_name="t_fail", override_times="25:00"))
    jobs = {**tj.scheduled("t_count"), **tj.scheduled("t_fail")}
    # when a tick comes,
    report = dispatch(system.db, system.broker, minute, jobs=jobs)
    system.drain()
    # then the healthy job still ran, and the report names the broken one and why.
    assert [r.status for r in runs(system, "t_count")] == ["succeeded"]
    assert runs(system, "t_fail") == []
    assert report.errors and report.errors[0][0] == "t_fail"
    assert "25:00" in report.errors[0][1]


def test_run_whose_workers_keep_dying_is_failed_and_dead_lettered(
    system: System, tj: ThrowawayJobs
) -> None:
    # Given a run delivered again and again to workers that died mid-run (SIGKILL/OOM:
    # Dramatiq never counted those as retries),
    attempts = system.db.settings.max_redeliveries + 5
    run_id = add_run(system.db, "t_count", status="running", attempts=attempts, started_at=utcnow())
    # when it is delivered once more,
    system.broker.get_actor("t_count").send(run_id=run_id)
    system.drain()
    # then it does not run again: its record says why it was given up, durably,
    (run,) = runs(system, "t_count")
    assert tj.calls == []
    assert run.status == "failed" and "gave up after" in (run.error or "")
    # and the message is kept in the dead-letter queue for inspection.
    # (RabbitMQ: the nack lands just after the worker moves on)
    wait_for(lambda: dead_lettered(system) >= 1, 10, "the message dead-lettered")
    assert dead_lettered(system) == 1


def dead_lettered(system: System) -> int:
    """Messages in the dead-letter queues (StubBroker's list, or RabbitMQ's .XQ queues)."""
    broker = system.broker
    if hasattr(broker, "dead_letters"):
        return len(broker.dead_letters)
    from dramatiq.common import xq_name

    channel = broker.channel
    return sum(
        channel.queue_declare(xq_name(q), passive=True).method.message_count
        for q in broker.get_declared_queues()
        if not q.endswith((".DQ", ".XQ"))
    )
