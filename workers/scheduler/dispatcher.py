"""Turns a tick into runs: every (job, slot) due in the tick's minute, exactly once.

Exactly once comes from the database, not from the tick: each due slot is inserted
into ``job_runs`` under the unique (job_name, scheduled_for) key with ON CONFLICT DO
NOTHING, and only the dispatcher whose insert won publishes the message. The
scheduler-state row is locked for the duration, so racing dispatchers also agree on
how far dispatch has got (``dispatched_until``). Duplicate ticks, two schedulers, a
redelivered tick or a tick re-sent after a restart therefore change nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from schema.base import utcnow
from schema.engine import Database
from schema.run_lifecycle import blocking, expired
from schema.scheduling import JobRun, ScheduledJobConfig, SchedulerState
from tickwork.errors import ScheduleError
from tickwork.schedules import floor_minute
from workers.registry import JobSpec, all_jobs
from workers.scheduler.effective import (
    EntrySchedule,
    effective_schedule,
    entry_schedules,
    last_starts,
)
from workers.scheduler.publish import publish_run, republish_stranded

logger = logging.getLogger(__name__)

MAX_CATCHUP = dt.timedelta(days=1)  # how far back "catch up once" looks after downtime
STALE_GRACE = dt.timedelta(minutes=2)


@dataclass
class DispatchReport:
    tick_at: dt.datetime
    window: tuple[dt.datetime, dt.datetime] | None = None
    held: bool = False
    queued: list[tuple[str, dt.datetime]] = field(default_factory=list)
    skipped: list[tuple[str, dt.datetime, str]] = field(default_factory=list)
    caught_up: list[tuple[str, dt.datetime]] = field(default_factory=list)
    reaped: list[int] = field(default_factory=list)  # ids of runs failed as "worker lost"
    expired: list[int] = field(default_factory=list)  # queued runs whose message was lost
    republished: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (job, why not dispatched)


def lock_state(session: Session) -> SchedulerState:
    """The single scheduler-state row, locked (created on first use)."""
    state = session.get(SchedulerState, 1, with_for_update=True)
    if state is None:
        insert = _insert(session, SchedulerState).values(id=1, held=False)
        session.execute(insert.on_conflict_do_nothing())
        state = session.get(SchedulerState, 1, with_for_update=True)
        assert state is not None
    return state


def _insert(session: Session, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def insert_run(
    session: Session, job_name: str, slot: dt.datetime | None, **values: Any
) -> int | None:
    """Insert a run for (job, slot); returns its id, or None if the slot already has one."""
    stmt = (
        _insert(session, JobRun)
        .values(job_name=job_name, scheduled_for=slot, queued_at=utcnow(), **values)
        .on_conflict_do_nothing()
        .returning(JobRun.id)
    )
    return session.execute(stmt).scalar_one_or_none()


def dispatch(
    db: Database,
    broker: dramatiq.Broker,
    tick_at: dt.datetime,
    now: dt.datetime | None = None,
    jobs: dict[str, JobSpec] | None = None,
    on_reaped: Callable[[JobRun], None] | None = None,
) -> DispatchReport:
    """Dispatch every slot due in the minute of ``tick_at``; safe to call any number of times.

    ``on_reaped`` hears of each run found to have lost its worker (failed like any other
    run: the tick actor passes the run-record hooks, so e-mail and metrics follow).
    """
    now = now or utcnow()
    minute = floor_minute(tick_at)
    end = minute + dt.timedelta(seconds=59)  # slots are whole seconds: (start, end]
    jobs = all_jobs() if jobs is None else jobs
    report = DispatchReport(tick_at=minute)
    to_publish: list[tuple[int, str, dt.datetime]] = []

    with db.session() as session:
        state = lock_state(session)
        state.last_tick_at = now
        if state.held:
            report.held = True
            return report
        start = state.dispatched_until or (minute - dt.timedelta(seconds=1))
        if start >= end:
            return report  # this minute was already dispatched (duplicate tick)
        report.window = (start, end)
        configs = {c.job_name: c for c in session.scalars(select(ScheduledJobConfig))}
        started = last_starts(session, jobs.values())
        lost = expire_lost_runs(session, now, db.settings.message_age_limit_s)
        busy = busy_jobs(session, now, db.settings.run_heartbeat_s, db.settings.message_age_limit_s)
        buffered = busy_jobs(
            session, now, db.settings.run_heartbeat_s, db.settings.message_age_limit_s, "queued"
        )
        for spec in jobs.values():
            try:
                effective = effective_schedule(spec, configs.get(spec.name), started.get(spec.name))
            except ScheduleError as exc:
                # One bad override must not stop every other job's dispatch.
                logger.error("job %s not dispatched: %s", spec.name, exc)
                report.errors.append((spec.name, str(exc)))
                continue
            if not effective.enabled:
                continue
            try:
                entries = entry_schedules(spec, configs.get(spec.name), started.get(spec.name))
            except ScheduleError as exc:
                logger.error("job %s not dispatched: %s", spec.name, exc)
                report.errors.append((spec.name, str(exc)))
                continue
            for entry in entries:  # the job's own schedule, then @job(entries=...)
                schedule = entry.schedule
                # Slots of minutes whose tick never came (downtime): the catch-up policy.
                if start < minute - dt.timedelta(seconds=1):
                    missed_from = max(start, minute - MAX_CATCHUP)
                    latest_missed = None
                    for slot in schedule.fires_between(
                        missed_from, minute - dt.timedelta(seconds=1)
                    ):
                        latest_missed = slot
                    if (
                        latest_missed is not None
                        and spec.catchup == "once"
                        and _queue(
                            session,
                            spec,
                            latest_missed,
                            "catchup",
                            busy,
                            now,
                            report,
                            to_publish,
                            entry,
                            buffered,
                        )
                    ):
                        report.caught_up.append((spec.name, latest_missed))
                current_start = max(start, minute - dt.timedelta(seconds=1))
                for slot in schedule.fires_between(current_start, end):
                    _queue(
                        session,
                        spec,
                        slot,
                        "schedule",
                        busy,
                        now,
                        report,
                        to_publish,
                        entry,
                        buffered,
                    )
        state.dispatched_until = end
        reaped = reap_stale_runs(session, now, jobs, db.settings.default_time_limit_s)
        session.flush()
        report.reaped = [run.id for run in reaped]
        report.expired = [run.id for run in lost]

    if on_reaped is not None:
        for gone in (*lost, *reaped):
            on_reaped(gone)

    for run_id, job_name, _slot in to_publish:
        with db.session() as session:
            run = session.get(JobRun, run_id)
        if run is not None:
            publish_run(broker, db, run, jobs.get(job_name), now)
    report.republished = republish_stranded(broker, db, now)
    return report


def _queue(
    session: Session,
    spec: JobSpec,
    slot: dt.datetime,
    trigger: str,
    busy: set[tuple[str, str]],
    now: dt.datetime,
    report: DispatchReport,
    to_publish: list[tuple[int, str, dt.datetime]],
    entry: EntrySchedule | None = None,
    buffered: set[tuple[str, str]] | None = None,
) -> bool:
    buffered = set() if buffered is None else buffered
    slot_values: dict[str, Any] = {}
    if entry is not None:
        slot_values = {"entry": entry.entry, "kwargs": entry.kwargs}
    key = (spec.name, slot_values.get("entry", ""))  # overlap is judged per schedule entry
    # Overlap is judged when a slot is due: for a slot still to come (a sub-minute
    # schedule's later slots, sent as delayed messages), the worker judges it then.
    reason = None
    waits = spec.overlap in ("buffer_one", "replace") and key in buffered
    if spec.overlap == "skip" and key in busy and slot <= now:
        reason = "previous run still queued or running (overlap policy: skip)"
    elif waits and key in busy and slot <= now:
        # One run already waits behind the running one: keep at most one (Temporal).
        reason = f"a run is already waiting behind the running one (overlap policy: {spec.overlap})"
    if reason is not None:
        if (
            insert_run(
                session,
                spec.name,
                slot,
                trigger=trigger,
                status="skipped",
                skip_reason=reason,
                finished_at=utcnow(),
                **slot_values,
            )
            is not None
        ):
            report.skipped.append((spec.name, slot, reason))
        return False
    run_id = insert_run(session, spec.name, slot, trigger=trigger, status="queued", **slot_values)
    if run_id is None:
        return False  # another tick or dispatcher already has this slot
    if slot <= now:
        if key in busy:
            buffered.add(key)  # queued behind a busy job: the worker holds it until free
        busy.add(key)
    to_publish.append((run_id, spec.name, slot))
    report.queued.append((spec.name, slot))
    return True


def busy_jobs(
    session: Session,
    now: dt.datetime,
    heartbeat_s: int,
    message_age_limit_s: int,
    *statuses: str,
) -> set[tuple[str, str]]:
    """(job, schedule entry) pairs with a run that blocks their next slot
    (docs/RUN_LIFECYCLE.md): queued and due, or running on a live worker. Provably dead
    runs do not count. ``statuses``: only runs in these (``queued``: a run waiting)."""
    query = (
        select(JobRun.job_name, JobRun.entry)
        .where(JobRun.status.in_(statuses or ("queued", "running")))
        .where(blocking(now, heartbeat_s, message_age_limit_s))
        .distinct()
    )
    return {(name, entry) for name, entry in session.execute(query)}


def expire_lost_runs(session: Session, now: dt.datetime, message_age_limit_s: int) -> list[JobRun]:
    """Fail published queued runs that can no longer start: due longer ago than the
    message age limit, so Dramatiq would drop their message if it ever came."""
    lost = list(
        session.scalars(
            select(JobRun)
            .where(expired(now, message_age_limit_s))
            .order_by(JobRun.id)
            .limit(1000)
            .with_for_update(skip_locked=True)
        )
    )
    for run in lost:
        due = run.scheduled_for or run.published_at
        run.status = "failed"
        run.finished_at = now
        run.error = (
            f"expired: queued, due at {due:%Y-%m-%d %H:%M:%S} UTC, and never delivered "
            f"within the message age limit ({message_age_limit_s} s); its message was lost "
            "(purged, dropped, or sent to another broker)"
        )
    return lost


def reap_stale_runs(
    session: Session, now: dt.datetime, jobs: dict[str, JobSpec], default_limit_s: int
) -> list[JobRun]:
    """Fail runs left ``running`` past their time limit: their worker is gone.

    Nothing legitimately runs past its time limit (Dramatiq's TimeLimit stops it), so a
    run still ``running`` after limit + grace lost its worker; a record must never
    stay ``running`` forever.
    """
    reaped: list[JobRun] = []
    stale = session.scalars(
        select(JobRun).where(JobRun.status == "running").with_for_update(skip_locked=True)
    )
    for run in stale:
        spec = jobs.get(run.job_name)
        limit = (
            dt.timedelta(
                seconds=(spec.time_limit_s if spec and spec.time_limit_s else default_limit_s)
            )
            + STALE_GRACE
        )
        if run.started_at is not None and now - run.started_at > limit:
            # A run an operator asked to cancel ends canceled, however it ends.
            run.status = "canceled" if run.cancel_requested_at else "failed"
            run.finished_at = now
            run.error = (
                f"worker lost: still running {int((now - run.started_at).total_seconds())} s "
                f"after start, past its time limit of {int(limit.total_seconds())} s with grace"
            )
            reaped.append(run)
    return reaped


def set_held(db: Database, held: bool) -> None:
    with db.session() as session:
        state = lock_state(session)
        state.held = held
        state.held_at = utcnow() if held else None


def advance_watermark(db: Database, until: dt.datetime) -> None:
    with db.session() as session:
        lock_state(session)
        session.execute(
            update(SchedulerState).where(SchedulerState.id == 1).values(dispatched_until=until)
        )
