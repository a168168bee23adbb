"""Waldur-style resource jobs (../shared/seeds/waldur-scheduled-jobs.md): pull remote
resources, mark resources stuck provisioning as erred, terminate expired resources."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Table, and_

from schema.base import utcnow
from schema.sync import RemoteResource
from workers.batching import update_in_batches
from workers.context import JobResult, RunContext
from workers.registry import job
from workers.sync.pull import pull
from workers.sync.source import HttpJsonSource, source_from_url

RESOURCES = cast(Table, RemoteResource.__table__)


def _source_configured(ctx: RunContext) -> str | None:
    return None if ctx.settings.sync_source_url else "TICKWORK_SYNC_SOURCE_URL is not set"


@job(
    description="Pulls remote resources changed since the last good pull and upserts them "
    "by external id; a full pull also handles resources missing upstream.",
    schedule="@hourly",
    precheck=_source_configured,
    max_retries=2,
)
def pull_remote_resources(ctx: RunContext, full: bool = False) -> JobResult:
    s = ctx.settings
    assert s.sync_source_url is not None  # the precheck saw to it
    source = source_from_url(s.sync_source_url, s.sync_timeout_s, s.sync_retries)
    try:
        report = pull(
            ctx.db, source, s.sync_source_name, s.sync_missing_policy, s.cleanup_batch_size, full
        )
    finally:
        if isinstance(source, HttpJsonSource):
            source.close()
    kind = "full" if report.full else "incremental"
    return JobResult(
        records_processed=report.records,
        output=f"{kind} pull: {report.fetched} fetched, {report.upserted} upserted, "
        f"{report.missing} missing upstream ({s.sync_missing_policy}); cursor {report.cursor}",
    )


@job(
    description="Marks resources provisioning for more than 3 hours as erred.",
    schedule="@hourly",
)
def mark_stuck_resources_erred(ctx: RunContext) -> JobResult:
    now = utcnow()
    cutoff = now - dt.timedelta(hours=ctx.settings.stuck_provisioning_hours)
    stats = update_in_batches(
        ctx.db,
        RESOURCES,
        and_(RESOURCES.c.state == "provisioning", RESOURCES.c.state_changed_at < cutoff),
        {"state": "erred", "state_changed_at": now},
        ctx.settings.cleanup_batch_size,
    )
    return JobResult(records_processed=stats.rows, output=f"{stats.rows} marked erred")


@job(
    description="Terminates resources whose end date has passed.",
    schedule="@daily",
)
def terminate_expired_resources(ctx: RunContext) -> JobResult:
    now = utcnow()
    stats = update_in_batches(
        ctx.db,
        RESOURCES,
        and_(
            RESOURCES.c.end_date < now,
            RESOURCES.c.state.not_in(("terminated", "deleting")),
        ),
        {"state": "terminated", "state_changed_at": now},
        ctx.settings.cleanup_batch_size,
    )
    return JobResult(records_processed=stats.rows, output=f"{stats.rows} terminated")
