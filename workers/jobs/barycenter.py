"""Barycenter's four cleanup jobs (../shared/seeds/barycenter-cleanup-jobs.md), with its
6-field, seconds-first schedules. Each deletes in bounded batches and counts exactly."""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, or_, select

from schema.base import utcnow
from schema.identity import DeviceCode, RefreshToken, Session, WebauthnChallenge
from workers.batching import delete_in_batches
from workers.context import JobResult, RunContext
from workers.registry import job

SESSIONS = cast(Table, Session.__table__)
REFRESH_TOKENS = cast(Table, RefreshToken.__table__)
CHALLENGES = cast(Table, WebauthnChallenge.__table__)
DEVICE_CODES = cast(Table, DeviceCode.__table__)


def _expired(table: Table, ctx: RunContext) -> str | None:
    """Precheck: skip (and say so) when nothing has expired."""
    with ctx.db.session() as session:
        found = session.scalar(select(table.c.id).where(table.c.expires_at < utcnow()).limit(1))
    return None if found else f"no expired rows in {table.name}"


def _deleted(ctx: RunContext, table: Table, where: ColumnElement[bool], what: str) -> JobResult:
    stats = delete_in_batches(ctx.db, table, where, ctx.settings.cleanup_batch_size)
    return JobResult(
        records_processed=stats.rows,
        output=f"deleted {stats.rows} {what} in {stats.batches} batches "
        f"(longest transaction {stats.longest_transaction_s * 1000:.0f} ms)",
    )


@job(
    description="Deletes expired user sessions.",
    schedule="0 0 * * * *",
    precheck=lambda ctx: _expired(SESSIONS, ctx),
)
def cleanup_expired_sessions(ctx: RunContext) -> JobResult:
    return _deleted(ctx, SESSIONS, SESSIONS.c.expires_at < utcnow(), "expired sessions")


@job(
    description="Deletes expired refresh tokens, and tokens rotated out of their chain "
    "once past the grace period.",
    schedule="0 30 * * * *",
)
def cleanup_expired_refresh_tokens(ctx: RunContext) -> JobResult:
    now = utcnow()
    grace = dt.timedelta(seconds=ctx.settings.refresh_token_grace_s)
    where = or_(
        REFRESH_TOKENS.c.expires_at < now,
        and_(REFRESH_TOKENS.c.rotated_at.is_not(None), REFRESH_TOKENS.c.rotated_at < now - grace),
    )
    return _deleted(ctx, REFRESH_TOKENS, where, "refresh tokens")


@job(
    description="Deletes WebAuthn challenges older than 5 minutes (unclaimed ceremonies).",
    schedule="0 */5 * * * *",
)
def cleanup_expired_challenges(ctx: RunContext) -> JobResult:
    cutoff = utcnow() - dt.timedelta(seconds=ctx.settings.webauthn_challenge_lifetime_s)
    return _deleted(ctx, CHALLENGES, CHALLENGES.c.created_at < cutoff, "WebAuthn challenges")


@job(
    description="Deletes expired device authorization codes.",
    schedule="0 45 * * * *",
    precheck=lambda ctx: _expired(DEVICE_CODES, ctx),
)
def cleanup_expired_device_codes(ctx: RunContext) -> JobResult:
    return _deleted(ctx, DEVICE_CODES, DEVICE_CODES.c.expires_at < utcnow(), "device codes")
