"""The audit log on both databases: append-only (the database refuses an UPDATE of a
row), a revoked token leaves its rows (token_id NULL), the retention prunes old rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from admin.api.auth import create_token, revoke_token
from schema.audit import Actor, AuditEntry, prune_audit_log, record_audit
from schema.base import utcnow


def test_rows_cannot_be_rewritten_but_outlive_their_token(db: Any) -> None:
    # Given a change recorded by a token,
    made = create_token(db, "night shift", scope="operator")
    with db.session() as session:
        record_audit(
            session,
            Actor("night shift", made.id),
            "disable",
            "job:x",
            {"enabled": True},
            {"enabled": False},
        )
    # when someone tries to rewrite what it says, then the database refuses;
    with pytest.raises(DBAPIError, match="append-only"), db.session() as session:
        session.execute(update(AuditEntry).values(actor="someone else"))
    # when the token is revoked, then its rows stay, naming it, without its id.
    assert revoke_token(db, made.id, actor="cli:root")
    with db.session() as session:
        rows = {r.action: r for r in session.scalars(select(AuditEntry))}
    assert rows["disable"].actor == "night shift" and rows["disable"].token_id is None
    assert set(rows) == {"token-create", "disable", "token-revoke"}


def test_retention_deletes_only_old_rows(db: Any) -> None:
    with db.session() as session:
        for days in (400, 10):
            entry = record_audit(session, "cli:root", "hold", "scheduler", None, {"held": True})
            entry.at = utcnow() - dt.timedelta(days=days)
    with db.session() as session:
        assert prune_audit_log(session, retention_days=365) == 1
    with db.session() as session:
        assert len(list(session.scalars(select(AuditEntry)))) == 1


def test_an_unknown_action_is_refused(db: Any) -> None:
    with pytest.raises(ValueError, match="unknown audit action"), db.session() as session:
        record_audit(session, "cli:root", "explode", "job:x", None, None)
