"""The audit log: who changed what, when, before → after (append-only).

Every operator change (trigger, enable/disable, override, notify, hold/release,
dead-letter replay/purge, cancel, retry, token create/revoke) writes one row with
:func:`record_audit`, in the same transaction as the change it describes: a change
without its row, or a row without its change, cannot be committed. The CLI, the API and
the page all reach the same control functions, so they all leave rows. Rows are never
updated; only :func:`prune_audit_log` deletes them, past the retention setting
(``TICKWORK_AUDIT_RETENTION_DAYS``).
"""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from schema.base import Base, created_at, intpk, utcnow

#: Who made a change nobody in particular asked for (tests, internal callers).
SYSTEM_ACTOR = "system"
ACTIONS = (
    "trigger",
    "enable",
    "disable",
    "set-schedule",
    "notify-on-success",
    "hold",
    "release",
    "dead-letter-replay",
    "dead-letter-purge",
    "cancel",
    "retry",
    "backfill",
    "token-create",
    "token-revoke",
)


class AuditEntry(Base):
    """One change by one actor; ``before``/``after`` are small JSON objects."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target_at", "target", "at"),)

    id: Mapped[intpk]
    at: Mapped[created_at] = mapped_column(index=True)
    # A token's name (API, page), or "cli:<os user>".
    actor: Mapped[str] = mapped_column(String(255))
    # The token that acted, when it was the API (names need not be unique).
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str] = mapped_column(String(255))  # "job:NAME", "run:ID", "token:ID"...
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    detail: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class Actor:
    """Who acts: a token (its name and id) or ``cli:<os user>``."""

    name: str
    token_id: int | None = None


def cli_actor() -> Actor:
    """The actor of a CLI command: ``cli:<os user>``."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container with a bare uid)
        user = "unknown"
    return Actor(f"cli:{user}")


def record_audit(
    session: Session,
    actor: Actor | str,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    detail: str | None = None,
) -> AuditEntry:
    """Add the row to ``session``: it commits (or rolls back) with the change."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r} (known: {', '.join(ACTIONS)})")
    who = actor if isinstance(actor, Actor) else Actor(actor)
    entry = AuditEntry(
        at=utcnow(),
        actor=who.name[:255] or SYSTEM_ACTOR,
        token_id=who.token_id,
        action=action,
        target=target[:255],
        before=before,
        after=after,
        detail=detail,
    )
    session.add(entry)
    return entry


def audit_entries(
    session: Session,
    *,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: dt.datetime | None = None,
) -> list[AuditEntry]:
    """Newest first, filtered."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    if target:
        query = query.where(AuditEntry.target == target)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    return list(session.scalars(query))


def prune_audit_log(session: Session, retention_days: int, now: dt.datetime | None = None) -> int:
    """Delete rows older than the retention; how many."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    result = session.execute(delete(AuditEntry).where(AuditEntry.at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
