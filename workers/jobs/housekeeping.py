"""tickwork's own upkeep: a heartbeat that proves the pipeline end to end, and the
pruning of old run history and of the audit log past its retention."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Table, and_, func, select

from schema.audit import prune_audit_log as prune
from schema.base import utcnow
from schema.scheduling import FINISHED_STATUSES, JobRun
from workers.batching import delete_in_batches
from workers.context import JobResult, RunContext
from workers.registry import job


@job(
    description="Proves tick → dispatch → worker → run record works; records nothing else.",
    schedule="* * * * *",
    time_limit_s=30,
    max_retries=0,
)
def heartbeat(ctx: RunContext) -> JobResult:
    lag_s = 0.0
    if ctx.scheduled_for is not None:
        lag_s = (utcnow() - ctx.scheduled_for).total_seconds()
    return JobResult(records_processed=0, output=f"alive; started {lag_s:.3f} s after its slot")


def _has_old_runs(ctx: RunContext) -> str | None:
    cutoff = utcnow() - dt.timedelta(days=ctx.settings.run_history_days)
    with ctx.db.session() as session:
        found = session.scalar(select(JobRun.id).where(JobRun.finished_at < cutoff).limit(1))
    return None if found else "no finished runs older than the history limit"


@job(
    description="Deletes finished run records older than TICKWORK_RUN_HISTORY_DAYS, in batches.",
    schedule="17 3 * * *",
    precheck=_has_old_runs,
)
def prune_run_history(ctx: RunContext) -> JobResult:
    cutoff = utcnow() - dt.timedelta(days=ctx.settings.run_history_days)
    runs = cast(Table, JobRun.__table__)
    old = and_(runs.c.finished_at < cutoff, runs.c.status.in_(FINISHED_STATUSES))
    deleted = delete_in_batches(ctx.db, runs, old, ctx.settings.cleanup_batch_size).rows
    ctx.add_records(deleted)
    with ctx.db.session() as session:
        left = session.scalar(select(func.count()).select_from(JobRun))
    return JobResult(records_processed=deleted, output=f"deleted {deleted}; {left} kept")


@job(
    description="Deletes audit-log rows older than TICKWORK_AUDIT_RETENTION_DAYS.",
    schedule="27 3 * * *",
)
def prune_audit_log(ctx: RunContext) -> JobResult:
    with ctx.db.session() as session:
        deleted = prune(session, ctx.settings.audit_retention_days)
    return JobResult(records_processed=deleted, output=f"deleted {deleted} audit row(s)")
