"""Workflows (docs/WORKFLOWS.md): chained runs, runs queued from a job's code, backfill,
and pause on failure.

Every run made here is inserted under a unique key, so asking twice queues once: a
chained run under ``after:<parent run id>`` (inserted with the parent's outcome, in
:mod:`workers.middleware.run_record_writer`), a run queued from code under
``from:<run id>:<n>`` (its n-th request), a backfilled slot under the slot key
(job, entry, due time) the dispatcher uses.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import dramatiq
from sqlalchemy import select, update

from schema.audit import SYSTEM_ACTOR, Actor, record_audit
from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun, ScheduledJobConfig
from tickwork.errors import ValidationError
from workers.registry import JobSpec, all_jobs, check_arguments, get_job
from workers.scheduler.dispatcher import insert_run
from workers.scheduler.effective import entry_schedules
from workers.scheduler.publish import publish_run

if TYPE_CHECKING:
    from workers.context import RunContext

logger = logging.getLogger(__name__)


# --- chains ---------------------------------------------------------------------------
class ChainPublisher:
    """A run-finished hook: sends the chained runs a success queued, at once (the outbox
    sends them anyway if this process dies first; the send claim makes racing harmless)."""

    def __init__(self, db: Database, broker: dramatiq.Broker) -> None:
        self.db = db
        self.broker = broker

    def __call__(self, run: JobRun) -> None:
        if run.status != "succeeded" or not _then_of(run.job_name):
            return
        with self.db.session() as session:
            children = list(
                session.scalars(
                    select(JobRun).where(
                        JobRun.triggered_by == run.id,
                        JobRun.status == "queued",
                        JobRun.published_at.is_(None),
                    )
                )
            )
        for child in children:
            publish_run(self.broker, self.db, child)


def _then_of(job_name: str) -> tuple[str, ...]:
    spec = all_jobs().get(job_name)
    return spec.then if spec else ()


def chain_of(db: Database, run_id: int) -> tuple[JobRun | None, list[JobRun]]:
    """The run that queued ``run_id`` (chain or code) and the runs it queued."""
    with db.session() as session:
        run = session.get(JobRun, run_id)
        if run is None:
            return None, []
        parent = session.get(JobRun, run.triggered_by) if run.triggered_by else None
        children = list(
            session.scalars(select(JobRun).where(JobRun.triggered_by == run_id).order_by(JobRun.id))
        )
        return parent, children


# --- a job queues another (pgeu's trigger_immediate_job_run) --------------------------
def queue_from_run(
    ctx: RunContext,
    broker: dramatiq.Broker | None,
    job_name: str,
    *,
    delay_s: float = 0,
    key: str | None = None,
    kwargs: dict[str, Any] | None = None,
) -> int:
    """Queue a run of ``job_name`` from a running job, after ``delay_s``; its id.

    Keyed by the request's position in the run (or ``key``), so a job body that runs
    again (at-least-once) asks for the same runs and gets the ones it queued before.
    """
    spec = get_job(job_name)
    if delay_s < 0:
        raise ValidationError(f"delay_s must be 0 or more, not {delay_s}")
    arguments = check_arguments(spec.name, spec.fn, dict(kwargs or {}))
    ctx.queued_count += 1
    idempotency_key = f"from:{ctx.run_id}:{key or ctx.queued_count}"
    due = utcnow() + dt.timedelta(seconds=delay_s) if delay_s else None
    return _insert_keyed(
        ctx.db,
        broker,
        spec,
        idempotency_key,
        trigger="job",
        scheduled_for=due,
        kwargs=arguments or None,
        triggered_by=ctx.run_id,
    )


def _insert_keyed(
    db: Database,
    broker: dramatiq.Broker | None,
    spec: JobSpec,
    idempotency_key: str,
    **values: Any,
) -> int:
    """Insert a run under (job, idempotency key), or find the one already there."""
    slot = values.pop("scheduled_for", None)
    with db.session() as session:
        run_id = insert_run(
            session, spec.name, slot, status="queued", idempotency_key=idempotency_key, **values
        )
        if run_id is None:
            existing = session.scalars(
                select(JobRun.id).where(
                    JobRun.job_name == spec.name, JobRun.idempotency_key == idempotency_key
                )
            ).first()
            if existing is None:  # the slot key collided, not ours: say so
                raise ValidationError(
                    f"{spec.name} already has a run due at {slot}; not queueing another"
                )
            return int(existing)
        run = session.get(JobRun, run_id)
    if broker is not None and run is not None:
        publish_run(broker, db, run, spec)
    return run_id


# --- backfill -------------------------------------------------------------------------
def backfill(
    db: Database,
    broker: dramatiq.Broker | None,
    job_name: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    max_runs: int | None = None,
    entry: str | None = None,
    now: dt.datetime | None = None,
    actor: Actor | str = SYSTEM_ACTOR,
) -> list[int]:
    """Queue one run per slot of the job's schedule (every entry, or only ``entry``)
    due in (``start``, ``end``], skipping slots that already have a run (ran, skipped or
    queued): the slot key the dispatcher uses makes a duplicate impossible. More than
    ``max_runs`` (default ``TICKWORK_BACKFILL_MAX_RUNS``) is refused before anything
    is queued. Returns the ids of the runs queued."""
    spec = get_job(job_name)
    now = now or utcnow()
    limit = db.settings.backfill_max_runs if max_runs is None else max_runs
    if limit < 1:
        raise ValidationError(f"max must be 1 or more, not {limit}")
    for name, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise ValidationError(f"{name}: give a time zone (e.g. 2026-11-30T08:00Z)")
    if start >= end:
        raise ValidationError(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    if end > now:
        raise ValidationError(f"to ({end.isoformat()}) is in the future: backfill fills the past")
    with db.session() as session:
        config = session.get(ScheduledJobConfig, spec.name)
    schedules = entry_schedules(spec, config)
    if entry is not None:
        schedules = [s for s in schedules if s.entry == entry]
        if not schedules:
            known = ", ".join(repr(s.entry) for s in entry_schedules(spec, config)) or "none"
            raise ValidationError(f"entry: {spec.name} has no entry {entry!r} (known: {known})")
    if not schedules:
        raise ValidationError(f"{spec.name} has no schedule: nothing to backfill")
    slots: list[tuple[str, dt.datetime, dict[str, Any] | None]] = []
    for scheduled in schedules:
        for slot in scheduled.schedule.fires_between(start, end):
            slots.append((scheduled.entry, slot, scheduled.kwargs))
            if len(slots) > limit:
                raise ValidationError(
                    f"more than {limit} slots of {spec.name} in that range: narrow it, "
                    "or raise the bound with --max N (API: max)"
                )
    queued: list[int] = []
    with db.session() as session:
        for entry_name, slot, kwargs in slots:
            run_id = insert_run(
                session,
                spec.name,
                slot,
                entry=entry_name,
                trigger="backfill",
                status="queued",
                kwargs=kwargs,
            )
            if run_id is not None:
                queued.append(run_id)
        record_audit(
            session,
            actor,
            "backfill",
            f"job:{spec.name}",
            None,
            {"from": start.isoformat(), "to": end.isoformat(), "entry": entry, "runs": queued},
            detail=f"{len(queued)} of {len(slots)} slots queued",
        )
    if broker is not None:
        for run_id in queued:
            with db.session() as session:
                run = session.get(JobRun, run_id)
            if run is not None:
                publish_run(broker, db, run, spec, now)
    return queued


# --- pause on failure -----------------------------------------------------------------
class PauseOnFailure:
    """A run-finished hook (before the e-mail): counts a job's failed runs in a row and,
    at its ``pause_after_failures``, disables it, saying so on the run (and so in the
    e-mail). A success resets the count; so does enabling the job again."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, run: JobRun) -> None:
        spec = all_jobs().get(run.job_name)
        if spec is None or spec.pause_after_failures is None:
            return
        if run.status == "succeeded":
            with self.db.session() as session:
                session.execute(
                    update(ScheduledJobConfig)
                    .where(
                        ScheduledJobConfig.job_name == run.job_name,
                        ScheduledJobConfig.consecutive_failures > 0,
                    )
                    .values(consecutive_failures=0)
                )
            return
        if run.status != "failed":
            return
        with self.db.session() as session:
            config = session.get(ScheduledJobConfig, run.job_name, with_for_update=True)
            if config is None:
                config = ScheduledJobConfig(
                    job_name=run.job_name, enabled=True, notify_on_success=False
                )
                session.add(config)
            config.consecutive_failures = (config.consecutive_failures or 0) + 1
            if not config.enabled or config.consecutive_failures < spec.pause_after_failures:
                return
            reason = (
                f"Job has been disabled: {config.consecutive_failures} failed runs in a row "
                f"(pause_after_failures={spec.pause_after_failures}); the last was run {run.id}. "
                f"Enable it again with `tickwork jobs enable {run.job_name}`."
            )
            config.enabled = False
            config.disabled_reason = reason
            config.updated_at = utcnow()
            record_audit(
                session,
                "pause-on-failure",
                "disable",
                f"job:{run.job_name}",
                {"enabled": True},
                {"enabled": False},
                detail=reason,
            )
            error = f"{run.error or ''}\n\n{reason}".strip()
            session.execute(update(JobRun).where(JobRun.id == run.id).values(error=error))
        run.error = error  # the e-mail hook, called next, reads the same run
        logger.error("%s", reason)
