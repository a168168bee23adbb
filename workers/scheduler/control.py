"""Operator controls (pgeu): run now, enable/disable, overrides, hold and release,
cancel and retry a run.

Every control validates fully before it writes: bad input raises a
:class:`tickwork.errors.TickworkError` subclass and changes nothing. Every change writes
its audit row (who, what, before → after) in the same transaction (schema/audit.py);
``actor`` is the caller: a token's name (API, page) or ``cli:<os user>``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import dramatiq
from sqlalchemy import select

from schema.audit import SYSTEM_ACTOR, Actor, record_audit
from schema.base import utcnow
from schema.engine import Database
from schema.run_lifecycle import blocking, may_move
from schema.scheduling import CLIENT_KEY_PREFIX, JobRun, ScheduledJobConfig
from schema.storable import check_text
from tickwork.errors import (
    JobBusyError,
    RunStateError,
    ScheduleError,
    UnknownRunError,
    ValidationError,
)
from tickwork.schedules import floor_minute, parse_interval, parse_times
from workers.registry import all_jobs, check_arguments, get_job
from workers.scheduler.dispatcher import insert_run, lock_state
from workers.scheduler.effective import effective_schedule, entry_schedules
from workers.scheduler.publish import publish_run


def trigger(
    db: Database,
    broker: dramatiq.Broker | None,
    job_name: str,
    *,
    force: bool = False,
    actor: Actor | str = SYSTEM_ACTOR,
    kwargs: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Run a job now: a manual run, sent at once (no jitter) and started as soon as a
    worker is free. Returns the run id.

    While a run of the job is queued or running, "run now" is refused with
    :class:`JobBusyError` naming that run, unless ``force``: then a second run starts
    alongside it (manual runs are never skipped by the overlap policy).

    ``broker`` None: only record the run; the outbox of the process that runs the
    workers sends it (the CLI in the embedded mode, docs/RUN_LIFECYCLE.md).

    ``kwargs`` are checked against the job's signature before anything is queued (a bad
    one raises :class:`ValidationError` naming it). With ``idempotency_key``, asking
    again with the same key returns the run the first request queued (a double click,
    a retried HTTP call) instead of queueing another.
    """
    spec = get_job(job_name)
    settings = db.settings
    arguments = check_arguments(spec.name, spec.fn, dict(kwargs or {}))
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 150:
        raise ValidationError("idempotency key: 1 to 150 characters")
    key = None if idempotency_key is None else CLIENT_KEY_PREFIX + idempotency_key
    with db.session() as session:
        if key is not None:
            earlier = session.scalars(
                select(JobRun.id).where(JobRun.job_name == spec.name, JobRun.idempotency_key == key)
            ).first()
            if earlier is not None:
                return int(earlier)
        if not force:
            now = utcnow()
            going = session.scalars(
                select(JobRun)
                .where(JobRun.job_name == spec.name, JobRun.status.in_(("queued", "running")))
                .where(blocking(now, settings.run_heartbeat_s, settings.message_age_limit_s))
                .order_by(JobRun.id)
            ).first()
            if going is not None:
                since = going.started_at or going.queued_at
                raise JobBusyError(
                    f"run {going.id} of {spec.name} is {going.status} (since "
                    f"{since:%Y-%m-%d %H:%M:%S} UTC); not starting another. Wait for it, or "
                    "use --force (API: force=true) to run one alongside it"
                )
        run_id = insert_run(
            session,
            spec.name,
            None,
            trigger="manual",
            status="queued",
            kwargs=arguments or None,
            idempotency_key=key,
        )
        if run_id is None:  # the same key, committed by a racing request just now
            raced = session.scalars(
                select(JobRun.id).where(JobRun.job_name == spec.name, JobRun.idempotency_key == key)
            ).one()
            return int(raced)
        run = session.get(JobRun, run_id)
        assert run is not None
        record_audit(
            session, actor, "trigger", f"job:{spec.name}", None, {"run_id": run_id, "force": force}
        )
    if broker is not None:
        publish_run(broker, db, run, spec)
    return run_id


def _config(db_session: object, job_name: str) -> ScheduledJobConfig:
    from sqlalchemy.orm import Session

    assert isinstance(db_session, Session)
    config = db_session.get(ScheduledJobConfig, job_name, with_for_update=True)
    if config is None:
        config = ScheduledJobConfig(job_name=job_name, enabled=True, notify_on_success=False)
        db_session.add(config)
    return config


def set_enabled(
    db: Database, job_name: str, enabled: bool, *, actor: Actor | str = SYSTEM_ACTOR
) -> None:
    get_job(job_name)
    with db.session() as session:
        config = _config(session, job_name)
        before = {"enabled": bool(config.enabled)}
        config.enabled = enabled
        if enabled:  # pause on failure counts again from zero
            config.consecutive_failures = 0
            config.disabled_reason = None
        config.updated_at = utcnow()
        action = "enable" if enabled else "disable"
        record_audit(session, actor, action, f"job:{job_name}", before, {"enabled": enabled})


def set_notify_on_success(
    db: Database, job_name: str, notify: bool, *, actor: Actor | str = SYSTEM_ACTOR
) -> None:
    get_job(job_name)
    with db.session() as session:
        config = _config(session, job_name)
        before = {"notify_on_success": bool(config.notify_on_success)}
        config.notify_on_success = notify
        config.updated_at = utcnow()
        record_audit(
            session,
            actor,
            "notify-on-success",
            f"job:{job_name}",
            before,
            {"notify_on_success": notify},
        )


def _override(config: ScheduledJobConfig) -> dict[str, Any]:
    return {"times": config.override_times, "interval_s": config.override_interval_s}


def set_schedule_override(
    db: Database,
    job_name: str,
    *,
    times: str | None = None,
    interval: str | None = None,
    actor: Actor | str = SYSTEM_ACTOR,
) -> None:
    """Override a job's schedule with daily times *or* an interval; both is an error.

    Passing neither clears the override (back to the default schedule).
    """
    get_job(job_name)
    if times and interval:
        raise ScheduleError("give override times or an override interval, not both")
    normalized_times = None
    if times:
        normalized_times = ",".join(
            t.strftime("%H:%M:%S") if t.second else t.strftime("%H:%M") for t in parse_times(times)
        )
        check_text(normalized_times, "the override times", ScheduledJobConfig.override_times)
    interval_s = parse_interval(interval) if interval else None
    with db.session() as session:
        config = _config(session, job_name)
        before = _override(config)
        config.override_times = normalized_times
        config.override_interval_s = interval_s
        config.anchor_at = None
        config.updated_at = utcnow()
        record_audit(session, actor, "set-schedule", f"job:{job_name}", before, _override(config))


def hold(db: Database, *, actor: Actor | str = SYSTEM_ACTOR) -> None:
    """Hold all jobs: ticks keep coming, nothing is dispatched until release."""
    with db.session() as session:
        state = lock_state(session)
        if not state.held:  # holding what is held changes nothing: no audit row
            state.held = True
            state.held_at = utcnow()
            record_audit(session, actor, "hold", "scheduler", {"held": False}, {"held": True})


def release(
    db: Database,
    broker: dramatiq.Broker | None,
    mode: Literal["run-missed", "reschedule"],
    now: dt.datetime | None = None,
    *,
    actor: Actor | str = SYSTEM_ACTOR,
) -> list[str]:
    """Release held jobs. ``run-missed``: each job that missed a slot while held runs
    once now. ``reschedule``: missed slots are dropped and interval jobs count from now,
    as if they had just run. Returns the names of jobs queued by the release.
    ``broker`` None: the runs are only recorded, for the outbox to send (as in trigger)."""
    if mode not in ("run-missed", "reschedule"):
        raise ValueError(f"release mode must be 'run-missed' or 'reschedule', not {mode!r}")
    now = now or utcnow()
    minute = floor_minute(now)
    queued: list[tuple[int, str]] = []
    with db.session() as session:
        state = lock_state(session)
        if not state.held:
            return []
        since = state.dispatched_until or state.held_at or minute
        configs = {c.job_name: c for c in session.scalars(select(ScheduledJobConfig))}
        for spec in all_jobs().values():
            effective = effective_schedule(spec, configs.get(spec.name))
            if not effective.enabled:
                continue
            if mode == "run-missed":  # each schedule entry that missed a slot, once
                for entry in entry_schedules(spec, configs.get(spec.name)):
                    missed = list(entry.schedule.fires_between(since, now))
                    if not missed:
                        continue
                    run_id = insert_run(
                        session,
                        spec.name,
                        missed[-1],
                        trigger="catchup",
                        status="queued",
                        entry=entry.entry,
                        kwargs=entry.kwargs,
                    )
                    if run_id is not None:
                        queued.append((run_id, spec.name))
                continue
            if effective.schedule is None or not list(effective.schedule.fires_between(since, now)):
                continue
            if (
                effective.source != "override times"
                and spec.schedule
                and (effective.schedule.kind == "interval")
            ):
                config = _config(session, spec.name)
                config.anchor_at = now.replace(microsecond=0)
        state.held = False
        state.held_at = None
        record_audit(
            session,
            actor,
            "release",
            "scheduler",
            {"held": True},
            {"held": False, "mode": mode, "queued": [name for _id, name in queued]},
        )
        # The current minute is dispatched by the next tick; everything before is settled.
        state.dispatched_until = (
            minute - dt.timedelta(seconds=1)
            if mode == "reschedule"
            else (now.replace(microsecond=0))
        )
    for run_id, _name in queued:
        if broker is None:
            break
        with db.session() as session:
            run = session.get(JobRun, run_id)
        if run is not None:
            publish_run(broker, db, run)
    return [name for _id, name in queued]


CANCELABLE = ("queued", "running")


def cancel_run(db: Database, run_id: int, *, actor: Actor | str = SYSTEM_ACTOR) -> str:
    """Cancel a run. Queued: canceled at once (its message, when it comes, is dropped).
    Running: the cancel is requested; the job sees ``ctx.cancelled`` (or
    ``ctx.check_cancelled()`` raises) and stops, and however the run then ends it is
    recorded ``canceled``. Returns the run's status after the request: ``canceled`` or
    ``running``. A finished run cannot be canceled (:class:`RunStateError`)."""
    with db.session() as session:
        run = session.get(JobRun, run_id, with_for_update=True)
        if run is None:
            raise UnknownRunError(f"no run with id {run_id}")
        if run.status not in CANCELABLE:
            raise RunStateError(
                f"run {run_id} of {run.job_name} is {run.status}: only a queued or running "
                "run can be canceled"
            )
        return request_cancel(session, run, actor=actor)


def request_cancel(
    session: Any, run: JobRun, *, actor: Actor | str, detail: str | None = None
) -> str:
    """The cancel itself, in the caller's transaction, on a queued or running ``run`` it
    holds locked: an operator's cancel and the overlap policy ``replace`` both ask this
    way. Records the request, cancels a queued run at once, and writes the audit row;
    returns the run's status after it."""
    now = utcnow()
    before = {"status": run.status, "cancel_requested_at": None}
    if run.cancel_requested_at is not None:
        before["cancel_requested_at"] = run.cancel_requested_at.isoformat()
    run.cancel_requested_at = run.cancel_requested_at or now
    if run.status == "queued":
        assert may_move("queued", "canceled")
        run.status = "canceled"
        run.finished_at = now
        run.error = f"canceled before it started (by {_name(actor)})"
    record_audit(
        session,
        actor,
        "cancel",
        f"run:{run.id}",
        before,
        {"status": run.status, "cancel_requested_at": run.cancel_requested_at.isoformat()},
        detail=detail or run.job_name,
    )
    return run.status


def retry_run(
    db: Database, broker: dramatiq.Broker | None, run_id: int, *, actor: Actor | str = SYSTEM_ACTOR
) -> int:
    """Queue a new run of a failed run's job, linked to it (``retry_of``), sent at once.
    Refused (:class:`RunStateError`) unless the run failed. Returns the new run's id.
    ``broker`` None: only recorded, for the outbox to send (as in :func:`trigger`)."""
    with db.session() as session:
        failed = _retryable(session.get(JobRun, run_id), run_id)
        spec = get_job(failed.job_name)
        # The same call again: the failed run's arguments (and its entry's name).
        new_id = insert_run(
            session,
            spec.name,
            None,
            trigger="retry",
            status="queued",
            retry_of=run_id,
            kwargs=failed.kwargs,
            entry=failed.entry,
        )
        assert new_id is not None  # NULL slots never conflict
        run = session.get(JobRun, new_id)
        assert run is not None
        record_audit(
            session,
            actor,
            "retry",
            f"run:{run_id}",
            {"status": "failed"},
            {"retry_run_id": new_id},
            detail=spec.name,
        )
    if broker is not None:
        publish_run(broker, db, run, spec)
    return new_id


def check_retryable(db: Database, run_id: int) -> None:
    """Raise what :func:`retry_run` would for this run (before a broker is looked for)."""
    with db.session() as session:
        _retryable(session.get(JobRun, run_id), run_id)


def _retryable(run: JobRun | None, run_id: int) -> JobRun:
    if run is None:
        raise UnknownRunError(f"no run with id {run_id}")
    if run.status != "failed":
        raise RunStateError(
            f"run {run_id} of {run.job_name} is {run.status}, not failed: only a failed "
            "run can be retried (use trigger to run the job again)"
        )
    return run


def _name(actor: Actor | str) -> str:
    return actor.name if isinstance(actor, Actor) else actor
