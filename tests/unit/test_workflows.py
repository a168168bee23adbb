"""Workflows of issue 19 (docs/WORKFLOWS.md), given / when / then: chains exactly once
(redelivery, two writers, two dispatchers), runs queued from a job's code, arguments,
schedule entries, backfill, pause on failure and idempotency keys.

Each ``flow`` test runs on SQLite + StubBroker and on PostgreSQL + RabbitMQ.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from schema.audit import AuditEntry
from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun, ScheduledJobConfig
from tests.support.systems import System
from tests.support.throwaway_jobs import ThrowawayJobs
from tests.support.waiting import wait_for
from tickwork.errors import ConfigError, ValidationError
from tickwork.schedules import floor_minute
from workers.context import RunContext
from workers.middleware.run_record_writer import FinishRun, RunRecordWriter
from workers.registry import Entry, all_jobs, check_chains, job, unregister
from workers.scheduler import control
from workers.scheduler.dispatcher import dispatch
from workers.scheduler.workflows import backfill, chain_of, queue_from_run

CALLS: list[tuple[str, dict[str, Any]]] = []
FLOW_JOBS = ("w_first", "w_second", "w_third", "w_queuer", "w_sync", "w_flaky")


def _declare() -> None:
    CALLS.clear()

    def w_first(ctx: RunContext) -> int:
        CALLS.append(("w_first", {}))
        return 1

    def w_second(ctx: RunContext) -> int:
        CALLS.append(("w_second", {}))
        return 1

    def w_third(ctx: RunContext) -> int:
        CALLS.append(("w_third", {}))
        return 1

    def w_queuer(ctx: RunContext, delay_s: int = 0) -> int:
        CALLS.append(("w_queuer", {}))
        ctx.queue_job("w_sync", delay_s=delay_s, source="queued")
        return 1

    def w_sync(ctx: RunContext, source: str, full: bool = False) -> int:
        CALLS.append(("w_sync", {"source": source, "full": full}))
        return 1

    def w_flaky(ctx: RunContext, fail: bool = True) -> int:
        CALLS.append(("w_flaky", {"fail": fail}))
        if fail:
            raise RuntimeError("upstream down")
        return 1

    job(description="test: first of a chain", then=["w_second", "w_third"])(w_first)
    job(description="test: second")(w_second)
    job(description="test: third")(w_third)
    job(description="test: queues w_sync from its code")(w_queuer)
    job(
        description="test: one function, several entries",
        entries=[
            Entry("a", "* * * * *", {"source": "A"}),
            Entry("b", "*/2 * * * *", {"source": "B", "full": True}),
        ],
    )(w_sync)
    job(description="test: fails", max_retries=0, pause_after_failures=2)(w_flaky)


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.integration)])
def flow(request: pytest.FixtureRequest, tj: ThrowawayJobs) -> Iterator[System]:
    """The system under test with the workflow jobs declared before its actors are bound."""
    _declare()
    try:
        yield request.getfixturevalue(request.param)
    finally:
        for name in FLOW_JOBS:
            unregister(name)


def runs(db: Database, name: str) -> list[JobRun]:
    with db.session() as s:
        return list(s.scalars(select(JobRun).where(JobRun.job_name == name).order_by(JobRun.id)))


def finished(db: Database, name: str, count: int) -> bool:
    done = [r for r in runs(db, name) if r.status in ("succeeded", "failed", "skipped")]
    return len(done) >= count


# --- chains ---------------------------------------------------------------------------
def test_a_success_queues_the_chained_jobs_linked_to_it(flow: System) -> None:
    # Given a job with then=[w_second, w_third], when a run of it succeeds,
    run_id = control.trigger(flow.db, flow.broker, "w_first")
    wait_for(
        lambda: finished(flow.db, "w_third", 1) and finished(flow.db, "w_second", 1),
        30,
        "chained runs finished",
    )
    # then each chained job ran once, linked to the run that queued it.
    for name in ("w_second", "w_third"):
        (child,) = runs(flow.db, name)
        assert (child.status, child.trigger, child.triggered_by) == ("succeeded", "chain", run_id)
    parent, children = chain_of(flow.db, run_id)
    assert parent is None and {c.job_name for c in children} == {"w_second", "w_third"}
    assert chain_of(flow.db, children[0].id)[0].id == run_id  # type: ignore[union-attr]


def test_a_redelivered_finishing_message_never_queues_a_chain_twice(flow: System) -> None:
    # Given a chained run that succeeded and queued its chain,
    run_id = control.trigger(flow.db, flow.broker, "w_first")
    wait_for(
        lambda: finished(flow.db, "w_third", 1) and finished(flow.db, "w_second", 1),
        30,
        "chain finished",
    )
    (parent,) = runs(flow.db, "w_first")
    # when its message is delivered again, and its outcome is recorded again by two
    # writers at once (as two processes would),
    actor = flow.broker.get_actor("w_first")
    flow.broker.enqueue(
        actor.message_with_options(kwargs={"run_id": run_id}).copy(message_id=parent.message_id)
    )
    flow.drain()
    values = {"status": "succeeded", "finished_at": utcnow(), "output": "", "error": None}
    writers = [RunRecordWriter(flow.db), RunRecordWriter(flow.db)]
    threads = [
        threading.Thread(
            target=w.finish, args=(FinishRun(run_id, dict(values), then=("w_second", "w_third")),)
        )
        for w in writers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flow.drain()
    # then the parent ran once and each chained job has exactly one run.
    assert [c for c, _ in CALLS].count("w_first") == 1
    assert len(runs(flow.db, "w_second")) == 1 and len(runs(flow.db, "w_third")) == 1


def test_two_dispatchers_of_a_chained_slot_make_one_chain(flow: System) -> None:
    # Given a scheduled chained job and two schedulers (each its own database handle),
    other = Database(flow.db.settings)
    spec = all_jobs()["w_first"]
    import dataclasses

    jobs = {"w_first": dataclasses.replace(spec, schedule="* * * * *")}
    minute = floor_minute(utcnow())
    # when both dispatch the same minute at once,
    threads = [
        threading.Thread(target=dispatch, args=(db, flow.broker, minute), kwargs={"jobs": jobs})
        for db in (flow.db, other)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.dispose()
    wait_for(
        lambda: finished(flow.db, "w_third", 1) and finished(flow.db, "w_second", 1),
        30,
        "chain finished",
    )
    flow.drain()
    # then one slot ran, and its chain ran once.
    assert len(runs(flow.db, "w_first")) == 1
    assert len(runs(flow.db, "w_second")) == 1 and len(runs(flow.db, "w_third")) == 1


def test_a_chain_naming_an_unknown_job_or_a_cycle_is_refused() -> None:
    _declare()  # w_sync needs an argument
    try:
        _chains_refused()
    finally:
        for name in FLOW_JOBS:
            unregister(name)


def _chains_refused() -> None:
    # Given chains naming a job nobody declared, and chains that loop,
    def f(ctx: RunContext) -> None:
        return None

    try:
        job("w_loose", description="test", then=["w_nobody"])(f)
        # when they are checked (start-up, `tickwork check`), then each is refused by name.
        with pytest.raises(ConfigError, match="w_nobody"):
            check_chains(all_jobs())
        unregister("w_loose")
        # (and a chain to a job that needs arguments, which a chained run never gets)
        job("w_needy_parent", description="test", then=["w_sync"])(f)
        with pytest.raises(ConfigError, match=r"then names 'w_sync'.*'source'"):
            check_chains(all_jobs())
        unregister("w_needy_parent")
        job("w_x", description="test", then=["w_y"])(f)
        job("w_y", description="test", then=["w_z"])(f)
        job("w_z", description="test", then=["w_x"])(f)
        with pytest.raises(ConfigError, match="cycle refused: w_x -> w_y -> w_z -> w_x"):
            check_chains(all_jobs())
    finally:
        for name in ("w_loose", "w_needy_parent", "w_x", "w_y", "w_z"):
            unregister(name)
    check_chains(all_jobs())


# --- a job queues another -------------------------------------------------------------
def test_a_job_queues_another_from_its_code_once_per_request(flow: System) -> None:
    # Given a job that queues w_sync from its code, when it runs,
    run_id = control.trigger(flow.db, flow.broker, "w_queuer")
    wait_for(lambda: finished(flow.db, "w_sync", 1), 30, "queued run finished")
    # then w_sync ran with the arguments given, linked to the run that queued it,
    (queued,) = runs(flow.db, "w_sync")
    assert (queued.trigger, queued.triggered_by, queued.status) == ("job", run_id, "succeeded")
    assert ("w_sync", {"source": "queued", "full": False}) in CALLS
    # and a second execution of the same body (at-least-once) gets the same run back.
    ctx = RunContext(run_id, "w_queuer", None, flow.db.settings, flow.db)
    assert queue_from_run(ctx, None, "w_sync", kwargs={"source": "queued"}) == queued.id
    # A delay puts the run off; bad arguments are refused naming the field.
    later = RunContext(run_id, "w_queuer", None, flow.db.settings, flow.db, queued_count=5)
    delayed = queue_from_run(later, None, "w_sync", delay_s=3600, kwargs={"source": "x"})
    with flow.db.session() as s:
        due = s.get(JobRun, delayed).scheduled_for  # type: ignore[union-attr]
    assert due is not None and due > utcnow() + dt.timedelta(minutes=59)
    with pytest.raises(ValidationError, match="'full'"):
        queue_from_run(later, None, "w_sync", kwargs={"source": "x", "full": "yes"})


# --- arguments ------------------------------------------------------------------------
def test_run_now_with_arguments_checks_them_before_queueing(flow: System) -> None:
    # Given a job with typed parameters, when run now with good arguments,
    control.trigger(flow.db, flow.broker, "w_sync", kwargs={"source": "S", "full": True})
    wait_for(lambda: finished(flow.db, "w_sync", 1), 30, "run finished")
    # then the job got them;
    assert ("w_sync", {"source": "S", "full": True}) in CALLS
    assert runs(flow.db, "w_sync")[0].kwargs == {"source": "S", "full": True}
    # bad ones are refused naming the field, and nothing is queued.
    for bad, named in (
        ({"source": 3}, "'source'"),
        ({}, "source"),
        ({"source": "S", "nope": 1}, "nope"),
        ({"source": "S", "run_id": 1}, "run_id"),
    ):
        with pytest.raises(ValidationError, match=named):
            control.trigger(flow.db, flow.broker, "w_sync", kwargs=bad, force=True)
    assert len(runs(flow.db, "w_sync")) == 1


def test_entries_of_one_job_run_with_their_own_arguments(flow: System) -> None:
    # Given one function with two entries (A every minute, B every two minutes),
    minute = floor_minute(utcnow())
    even = minute - dt.timedelta(minutes=minute.minute % 2)
    # when a minute due for both is dispatched,
    dispatch(flow.db, flow.broker, even, jobs={"w_sync": all_jobs()["w_sync"]})
    wait_for(lambda: finished(flow.db, "w_sync", 2), 30, "both entries ran")
    # then both ran, at the same slot, each with its own arguments.
    done = runs(flow.db, "w_sync")
    assert {(r.entry, r.scheduled_for) for r in done} == {("a", even), ("b", even)}
    assert ("w_sync", {"source": "A", "full": False}) in CALLS
    assert ("w_sync", {"source": "B", "full": True}) in CALLS


def test_an_entry_with_bad_arguments_is_refused_when_declared() -> None:
    def f(ctx: RunContext, count: int) -> None:
        return None

    with pytest.raises(ValidationError, match=r"entry 'x'.*'count'"):
        job("w_bad_entry", description="t", entries=[Entry("x", "@hourly", {"count": "1"})])(f)
    assert "w_bad_entry" not in all_jobs()


# --- idempotency key ------------------------------------------------------------------
def test_run_now_with_an_idempotency_key_queues_one_run(flow: System) -> None:
    # Given a run now with a key, when the same request comes again (double click, retry),
    first = control.trigger(flow.db, flow.broker, "w_second", idempotency_key="click-1")
    again = control.trigger(flow.db, flow.broker, "w_second", idempotency_key="click-1")
    flow.drain()
    # then it is the same run; another key is another run.
    assert first == again and len(runs(flow.db, "w_second")) == 1
    assert control.trigger(flow.db, flow.broker, "w_second", idempotency_key="click-2") != first


# --- backfill -------------------------------------------------------------------------
def test_backfill_queues_each_missed_slot_once_and_is_bounded(flow: System) -> None:
    # Given an entry every minute, and one slot of the range that already ran,
    now = floor_minute(utcnow())
    start = now - dt.timedelta(minutes=10)
    five_ago = now - dt.timedelta(minutes=5)
    dispatch(flow.db, flow.broker, five_ago, jobs={"w_sync": all_jobs()["w_sync"]})
    flow.drain()
    before = {(r.entry, r.scheduled_for) for r in runs(flow.db, "w_sync")}
    assert ("a", now - dt.timedelta(minutes=5)) in before
    # when more slots than the bound are asked for, nothing is queued;
    with pytest.raises(ValidationError, match="more than 5 slots"):
        backfill(flow.db, flow.broker, "w_sync", start, now, max_runs=5, entry="a")
    assert {(r.entry, r.scheduled_for) for r in runs(flow.db, "w_sync")} == before
    # when entry a is backfilled over the range, twice,
    queued = backfill(flow.db, flow.broker, "w_sync", start, now, entry="a")
    again = backfill(flow.db, flow.broker, "w_sync", start, now, entry="a")
    wait_for(lambda: finished(flow.db, "w_sync", len(before) + 10 - 1), 30, "backfill ran")
    # then every slot in (start, now] has one run, the one that ran was not repeated.
    slots = [r.scheduled_for for r in runs(flow.db, "w_sync") if r.entry == "a"]
    assert sorted(slots) == [start + dt.timedelta(minutes=i) for i in range(1, 11)]
    assert len(queued) == 9 and again == []
    assert {r.trigger for r in runs(flow.db, "w_sync") if r.id in queued} == {"backfill"}
    # Bad ranges are refused, naming what is wrong.
    with pytest.raises(ValidationError, match="must be before"):
        backfill(flow.db, flow.broker, "w_sync", now, start)
    with pytest.raises(ValidationError, match="future"):
        backfill(flow.db, flow.broker, "w_sync", start, now + dt.timedelta(hours=1))
    with pytest.raises(ValidationError, match="no entry 'zz'"):
        backfill(flow.db, flow.broker, "w_sync", start, now, entry="zz")


# --- pause on failure -----------------------------------------------------------------
def test_a_job_disables_itself_after_n_failures_in_a_row(flow: System) -> None:
    # Given a job that pauses after 2 failed runs in a row,
    control.trigger(flow.db, flow.broker, "w_flaky")
    wait_for(lambda: finished(flow.db, "w_flaky", 1), 30, "first failure")
    control.trigger(flow.db, flow.broker, "w_flaky", kwargs={"fail": False})
    wait_for(lambda: finished(flow.db, "w_flaky", 2), 30, "a success")
    # (a success in between resets the count)
    control.trigger(flow.db, flow.broker, "w_flaky")
    wait_for(lambda: finished(flow.db, "w_flaky", 3), 30, "second failure")
    with flow.db.session() as s:
        assert s.get(ScheduledJobConfig, "w_flaky").enabled  # type: ignore[union-attr]
    # when it fails twice in a row,
    control.trigger(flow.db, flow.broker, "w_flaky")

    def paused() -> bool:
        with flow.db.session() as s:
            config = s.get(ScheduledJobConfig, "w_flaky")
            return bool(config and not config.enabled)

    wait_for(paused, 30, "job disabled")
    # then it is disabled, and the run record says so;
    last = runs(flow.db, "w_flaky")[-1]
    assert "Job has been disabled: 2 failed runs in a row" in (last.error or "")
    # enabling it again resets the count.
    control.set_enabled(flow.db, "w_flaky", True)
    with flow.db.session() as s:
        config = s.get(ScheduledJobConfig, "w_flaky")
        assert config is not None and config.consecutive_failures == 0
        assert config.disabled_reason is None
        assert s.scalar(select(func.count()).select_from(JobRun)) >= 4


# --- overlap buffer_one ---------------------------------------------------------------
def test_buffer_one_keeps_one_run_waiting_behind_a_running_one(
    flow: System, tj: ThrowawayJobs
) -> None:
    # Given a job with overlap buffer_one whose run is running,
    jobs = tj.scheduled("t_slow", overlap="buffer_one")
    control.trigger(flow.db, flow.broker, "t_slow")
    wait_for(lambda: [r.status for r in runs(flow.db, "t_slow")] == ["running"], 30, "running")
    minute = floor_minute(utcnow())
    # when its next slot comes, it is queued and waits (not skipped, not run alongside);
    dispatch(flow.db, flow.broker, minute, jobs=jobs)
    # and when one more slot comes while that one waits, it is skipped with the reason;
    later = minute + dt.timedelta(minutes=1)
    dispatch(flow.db, flow.broker, later, now=later + dt.timedelta(seconds=1), jobs=jobs)
    statuses = [(r.trigger, r.status) for r in runs(flow.db, "t_slow")]
    assert statuses == [("manual", "running"), ("schedule", "queued"), ("schedule", "skipped")]
    assert "buffer_one" in (runs(flow.db, "t_slow")[2].skip_reason or "")
    import time

    time.sleep(1.5)  # the waiting run's message came, found the job busy, and waits again
    assert runs(flow.db, "t_slow")[1].status == "queued"
    assert tj.calls == ["t_slow"]
    # then when the running one ends, the buffered one runs.
    tj.release_slow.set()
    wait_for(lambda: runs(flow.db, "t_slow")[1].status == "succeeded", 30, "buffered run ran")
    assert tj.calls == ["t_slow", "t_slow"]
    assert runs(flow.db, "t_slow")[0].finished_at <= runs(flow.db, "t_slow")[1].started_at  # type: ignore[operator]


def test_replace_cancels_the_running_run_and_starts_the_new_one_once_it_stopped(
    flow: System, tj: ThrowawayJobs
) -> None:
    # Given a job with overlap replace (Kubernetes' Replace) that checks ctx.cancelled
    # between its steps, and a run of it going,
    jobs = tj.scheduled("t_steps", overlap="replace")
    control.trigger(flow.db, flow.broker, "t_steps")
    wait_for(lambda: [r.status for r in runs(flow.db, "t_steps")] == ["running"], 30, "running")
    # when its next slot comes,
    minute = floor_minute(utcnow())
    dispatch(flow.db, flow.broker, minute, jobs=jobs)
    # then the running run is asked to cancel and ends canceled, with an audit row naming
    # the run that replaces it,
    wait_for(lambda: runs(flow.db, "t_steps")[0].status == "canceled", 30, "old run canceled")
    old, new = runs(flow.db, "t_steps")
    assert old.records_processed < 200  # stopped between its steps, not run to its end
    with flow.db.session() as s:
        (row,) = s.scalars(select(AuditEntry).where(AuditEntry.target == f"run:{old.id}")).all()
    assert (row.actor, row.action) == ("overlap:replace", "cancel")
    assert f"replaced by run {new.id}" in (row.detail or "")
    # and the new run starts once the old one has stopped (never both at once).
    wait_for(lambda: runs(flow.db, "t_steps")[1].status == "succeeded", 60, "new run ran")
    old, new = runs(flow.db, "t_steps")
    assert (new.trigger, new.records_processed) == ("schedule", 200)
    assert old.finished_at is not None and new.started_at is not None
    assert old.finished_at <= new.started_at


def test_a_scheduled_job_that_needs_arguments_is_refused_at_declaration() -> None:
    # Given a job whose function needs an argument, when it is declared with a plain
    # schedule (whose runs get no arguments), then it is refused, naming the way out.
    def needs(ctx: RunContext, source: str) -> None: ...

    with pytest.raises(ValidationError, match=r"has a schedule but needs arguments.*entries"):
        job(name="w_needs", description="test", schedule="10 minutes")(needs)
    assert "w_needs" not in all_jobs()


def test_cancel_other_is_temporals_name_for_replace() -> None:
    @job(name="w_cancel_other", description="test", schedule="10 minutes", overlap="cancel_other")
    def w_cancel_other() -> None: ...

    try:
        assert all_jobs()["w_cancel_other"].overlap == "replace"
        with pytest.raises(ValueError, match="overlap must be one of"):
            job(name="w_bad", description="test", overlap="terminate")(w_cancel_other)  # type: ignore[arg-type]
    finally:
        unregister("w_cancel_other")


# --- interval from the last start -----------------------------------------------------
def test_an_interval_from_the_last_start_is_shifted_by_a_manual_run(
    flow: System, tj: ThrowawayJobs
) -> None:
    # Given a 10-minute interval counted from the last start (pgeu), and one on the epoch,
    from_start = tj.scheduled("t_count", "10 minutes", interval_from="last_start")
    on_epoch = tj.scheduled("t_count", "10 minutes")
    # when a manual run starts,
    control.trigger(flow.db, flow.broker, "t_count")
    wait_for(lambda: finished(flow.db, "t_count", 1), 30, "manual run")
    (manual,) = runs(flow.db, "t_count")
    assert manual.started_at is not None
    started = manual.started_at.replace(microsecond=0)
    # then the next slot is 10 minutes after it, not at the next multiple of 10 minutes;
    from workers.scheduler.effective import effective_schedule, last_starts

    with flow.db.session() as s:
        last = last_starts(s, from_start.values())["t_count"]
    shifted = effective_schedule(from_start["t_count"], None, last).schedule
    fixed = effective_schedule(on_epoch["t_count"], None, last).schedule
    assert shifted is not None and fixed is not None
    assert shifted.next_after(started) == started + dt.timedelta(minutes=10)
    assert fixed.next_after(started).minute % 10 == 0 and fixed.next_after(started).second == 0
    # and the dispatcher runs that slot when its minute comes, and not before.
    due = started + dt.timedelta(minutes=10)
    before = floor_minute(due) - dt.timedelta(minutes=1)
    dispatch(flow.db, flow.broker, before, now=before, jobs=from_start)
    assert len(runs(flow.db, "t_count")) == 1
    dispatch(flow.db, flow.broker, due, now=due, jobs=from_start)
    assert [r.scheduled_for for r in runs(flow.db, "t_count")][1:] == [due]


def test_interval_from_last_start_needs_an_interval_schedule() -> None:
    from tickwork.errors import ScheduleError

    def f(ctx: RunContext) -> None:
        return None

    with pytest.raises(ScheduleError, match="needs an interval schedule"):
        job("w_cron_from_start", description="t", schedule="@hourly", interval_from="last_start")(f)
    assert "w_cron_from_start" not in all_jobs()


# --- a service asks for a run (producers.jobs) ----------------------------------------
def test_a_service_requests_a_run_once_per_key_and_the_outbox_sends_it(flow: System) -> None:
    from producers.jobs import request_run
    from workers.scheduler.publish import republish_stranded

    # Given a service recording run requests (it cannot import the jobs), twice one key,
    first = request_run(flow.db, "w_sync", kwargs={"source": "svc"}, idempotency_key="r1")
    again = request_run(flow.db, "w_sync", kwargs={"source": "svc"}, idempotency_key="r1")
    unknown = request_run(flow.db, "w_nobody")
    # (the same key through run now returns the same run too)
    same = {"source": "svc"}
    assert (
        control.trigger(flow.db, flow.broker, "w_sync", kwargs=same, idempotency_key="r1") == first
    )
    assert first == again
    # when the outbox passes,
    republish_stranded(flow.broker, flow.db, utcnow() + dt.timedelta(seconds=30))
    wait_for(lambda: finished(flow.db, "w_sync", 1), 30, "requested run ran")
    # then the run ran once with its arguments, and a run of an unknown job is failed
    # with the reason instead of waiting forever.
    assert [c for c in CALLS if c[0] == "w_sync"] == [("w_sync", {"source": "svc", "full": False})]
    with flow.db.session() as s:
        gone = s.get(JobRun, unknown)
        assert gone is not None and gone.status == "failed"
        assert "no job named 'w_nobody'" in (gone.error or "")
    with pytest.raises(ValidationError, match="run_id"):
        request_run(flow.db, "w_sync", kwargs={"run_id": 3})


def test_the_failure_e_mail_says_the_job_was_disabled(sqlite_db: Database) -> None:
    from workers.scheduler.notifications import compose
    from workers.scheduler.workflows import PauseOnFailure

    # Given a job that pauses after one failure, and its failed run,
    _declare()
    try:
        job("w_once", description="t", pause_after_failures=1)(lambda ctx: None)
        with sqlite_db.session() as s:
            run = JobRun(job_name="w_once", trigger="manual", status="failed", error="boom")
            s.add(run)
        # when the run-finished hooks see it (pause first, then the e-mail),
        PauseOnFailure(sqlite_db)(run)
        mail = compose(run, sqlite_db.settings)
        # then the e-mail and the record say the job was disabled, and it is.
        assert "Job has been disabled: 1 failed runs in a row" in mail.get_content()
        with sqlite_db.session() as s:
            assert "Job has been disabled" in (s.get(JobRun, run.id).error or "")  # type: ignore[union-attr]
            assert not s.get(ScheduledJobConfig, "w_once").enabled  # type: ignore[union-attr]
    finally:
        unregister("w_once")
        for name in FLOW_JOBS:
            unregister(name)


def test_tickwork_check_names_a_chain_cycle(tmp_path: Any) -> None:
    from admin.checks import collect_checks
    from tests.conftest import make_settings

    def f(ctx: RunContext) -> None:
        return None

    job("w_p", description="t", then=["w_q"])(f)
    job("w_q", description="t", then=["w_p"])(f)
    try:
        results = {r.name: r for r in collect_checks(make_settings(tmp_path))}
    finally:
        unregister("w_p")
        unregister("w_q")
    assert not results["schedules"].ok
    assert "chain cycle refused: w_p -> w_q -> w_p" in results["schedules"].detail


def test_release_run_missed_runs_each_entry_that_missed_a_slot_once(flow: System) -> None:
    from workers.scheduler.dispatcher import advance_watermark

    # Given jobs held for five minutes (w_sync has two entries, both missed slots),
    advance_watermark(flow.db, floor_minute(utcnow()) - dt.timedelta(minutes=5))
    control.hold(flow.db)
    # when released with run-missed,
    control.release(flow.db, flow.broker, "run-missed")
    wait_for(lambda: finished(flow.db, "w_sync", 2), 30, "missed entries ran")
    # then each entry ran once, with its arguments.
    assert sorted(r.entry for r in runs(flow.db, "w_sync")) == ["a", "b"]
    assert {c[1]["source"] for c in CALLS if c[0] == "w_sync"} == {"A", "B"}
