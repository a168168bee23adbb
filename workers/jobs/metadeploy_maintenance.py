"""MetaDeploy's scheduled maintenance: cleanup_user_data, expire_preflight_results and
calculate_average_plan_runtimes (../shared/seeds/metadeploy-async-jobs.txt).

Every write goes through :mod:`workers.batching` (bounded batches, short transactions);
each job returns the exact number of rows it changed. All lifetimes come from settings.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import cast

from sqlalchemy import Table, and_, or_, select, update

from schema.base import utcnow
from schema.catalog import Plan
from schema.identity import ApiToken, OAuthToken, User
from schema.installs import Job, PreflightResult
from workers.batching import delete_in_batches, update_in_batches
from workers.context import JobResult, RunContext
from workers.installs.token_expiry import expire_oauth_tokens
from workers.registry import job

JOBS = cast(Table, Job.__table__)
PREFLIGHTS = cast(Table, PreflightResult.__table__)
OAUTH_TOKENS = cast(Table, OAuthToken.__table__)
USERS = cast(Table, User.__table__)
API_TOKENS = cast(Table, ApiToken.__table__)
PLANS = cast(Table, Plan.__table__)
RUNTIME_SAMPLE = 20  # recent complete jobs per plan
RUNTIME_MINIMUM = 5  # fewer than this: no average is stored


@job(
    description="MetaDeploy cleanup: cancel dead started jobs, delete stale OAuth tokens, "
    "idle non-staff users and old API tokens, clear old exceptions.",
    schedule="* * * * *",
    queue="short",
)
def cleanup_user_data(ctx: RunContext) -> JobResult:
    now = utcnow()
    s = ctx.settings
    batch = s.cleanup_batch_size
    counts: dict[str, int] = {}

    # 1. Started jobs past their time limit plus a grace period: their worker is gone.
    limit_s = s.job_time_limit_s + s.dead_job_grace_s
    counts["dead jobs canceled"] = update_in_batches(
        ctx.db,
        JOBS,
        and_(JOBS.c.status == "started", JOBS.c.started_at < now - dt.timedelta(seconds=limit_s)),
        {
            "status": "canceled",
            "canceled_at": now,
            "edited_at": now,
            "exception": f"Canceled by cleanup_user_data: still started {limit_s} s after it "
            f"began (time limit {s.job_time_limit_s} s + grace {s.dead_job_grace_s} s); "
            "its worker is presumed lost. Please retry the installation.",
        },
        batch,
    ).rows

    # 2. OAuth tokens idle past their lifetime (longer while the user has running work);
    #    each affected user gets a user.token_expired event.
    counts["OAuth tokens deleted"] = expire_oauth_tokens(ctx.db, s, now, batch)

    # 3. Non-staff users idle too long (their jobs stay, with the user set null).
    idle_since = now - dt.timedelta(days=s.inactive_user_days)
    counts["idle users deleted"] = delete_in_batches(
        ctx.db,
        USERS,
        and_(
            USERS.c.is_staff.is_(False),
            or_(
                USERS.c.last_login < idle_since,
                and_(USERS.c.last_login.is_(None), USERS.c.created_at < idle_since),
            ),
        ),
        batch,
    ).rows

    # 4. Exceptions (may hold customer metadata) cleared on old jobs and preflights.
    old = now - dt.timedelta(days=s.exception_retention_days)
    cleared = 0
    for table in (JOBS, PREFLIGHTS):
        cleared += update_in_batches(
            ctx.db,
            table,
            and_(table.c.created_at < old, table.c.exception.is_not(None)),
            {"exception": None},
            batch,
        ).rows
    counts["exceptions cleared"] = cleared

    # 5. API tokens past their expiry (stored per token; tokens from before it was
    # stored expire at created + TICKWORK_API_TOKEN_EXPIRE_AFTER_DAYS).
    counts["API tokens deleted"] = delete_in_batches(
        ctx.db,
        API_TOKENS,
        or_(
            API_TOKENS.c.expires_at < now,
            and_(
                API_TOKENS.c.expires_at.is_(None),
                API_TOKENS.c.created_at < now - dt.timedelta(days=s.api_token_expire_after_days),
            ),
        ),
        batch,
    ).rows

    total = sum(counts.values())
    return JobResult(
        records_processed=total, output="; ".join(f"{k}: {v}" for k, v in counts.items())
    )


@job(
    description="Invalidates preflights older than PREFLIGHT_LIFETIME_MINUTES and cancels "
    "preflights stuck started past it.",
    schedule="* * * * *",
    queue="short",
)
def expire_preflight_results(ctx: RunContext) -> JobResult:
    now = utcnow()
    cutoff = now - dt.timedelta(minutes=ctx.settings.preflight_lifetime_minutes)
    batch = ctx.settings.cleanup_batch_size
    invalidated = update_in_batches(
        ctx.db,
        PREFLIGHTS,
        and_(
            PREFLIGHTS.c.is_valid.is_(True),
            PREFLIGHTS.c.status != "started",
            PREFLIGHTS.c.created_at < cutoff,
        ),
        {"is_valid": False, "edited_at": now},
        batch,
    ).rows
    canceled = update_in_batches(
        ctx.db,
        PREFLIGHTS,
        and_(PREFLIGHTS.c.status == "started", PREFLIGHTS.c.created_at < cutoff),
        {
            "status": "canceled",
            "is_valid": False,
            "edited_at": now,
            "exception": "Canceled by expire_preflight_results: still started after "
            f"{ctx.settings.preflight_lifetime_minutes} minutes.",
        },
        batch,
    ).rows
    return JobResult(
        records_processed=invalidated + canceled,
        output=f"invalidated {invalidated}; stuck canceled {canceled}",
    )


@job(
    description="Per plan, the median of (success - enqueued) over its last 20 complete jobs, "
    "stored when there are at least 5.",
    schedule="@daily",
)
def calculate_average_plan_runtimes(ctx: RunContext) -> JobResult:
    updated = 0
    last_id = 0
    batch = ctx.settings.cleanup_batch_size
    while True:  # plans in batches of ids; one short transaction per plan's update
        with ctx.db.session() as session:
            plan_ids = list(
                session.scalars(
                    select(PLANS.c.id).where(PLANS.c.id > last_id).order_by(PLANS.c.id).limit(batch)
                )
            )
        if not plan_ids:
            break
        last_id = plan_ids[-1]
        for plan_id in plan_ids:
            with ctx.db.session() as session:
                rows = session.execute(
                    select(JOBS.c.enqueued_at, JOBS.c.success_at)
                    .where(
                        JOBS.c.plan_id == plan_id,
                        JOBS.c.status == "complete",
                        JOBS.c.enqueued_at.is_not(None),
                        JOBS.c.success_at.is_not(None),
                    )
                    .order_by(JOBS.c.success_at.desc())
                    .limit(RUNTIME_SAMPLE)
                ).all()
                if len(rows) < RUNTIME_MINIMUM:
                    continue
                median_s = statistics.median(
                    (success - enqueued).total_seconds() for enqueued, success in rows
                )
                session.execute(
                    update(PLANS).where(PLANS.c.id == plan_id).values(average_duration_s=median_s)
                )
                updated += 1
    return JobResult(records_processed=updated, output=f"averages stored for {updated} plans")
