"""OAuth token expiry after login inactivity (MetaDeploy's ``TOKEN_LIFETIME_MINUTES``).

A token is last used at the later of its creation and its user's last login. It expires
``token_lifetime_minutes`` after that, or ``token_lifetime_running_minutes`` while the
user has an install job created or started or a preflight started (the job still needs
it). Expired tokens are deleted (they are the org credentials) and each affected user
gets one ``user.token_expired`` event, so a UI can ask them to log in again.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Table, and_, case, delete, exists, or_, select

from schema.engine import Database
from schema.identity import OAuthToken, User
from schema.installs import Job, PreflightResult
from tickwork.events import emit
from tickwork.settings import Settings

_TOKENS = cast(Table, OAuthToken.__table__)
_USERS = cast(Table, User.__table__)
_JOBS = cast(Table, Job.__table__)
_PREFLIGHTS = cast(Table, PreflightResult.__table__)


def _expired(settings: Settings, now: dt.datetime) -> object:
    busy = or_(
        exists().where(
            _JOBS.c.user_id == _TOKENS.c.user_id, _JOBS.c.status.in_(("created", "started"))
        ),
        exists().where(
            _PREFLIGHTS.c.user_id == _TOKENS.c.user_id, _PREFLIGHTS.c.status == "started"
        ),
    )
    last_login = (
        select(_USERS.c.last_login).where(_USERS.c.id == _TOKENS.c.user_id).scalar_subquery()
    )
    last_used = case(
        (
            and_(last_login.is_not(None), last_login > _TOKENS.c.created_at),
            last_login,
        ),
        else_=_TOKENS.c.created_at,
    )
    idle_cutoff = now - dt.timedelta(minutes=settings.token_lifetime_minutes)
    busy_cutoff = now - dt.timedelta(minutes=settings.token_lifetime_running_minutes)
    return or_(
        and_(~busy, last_used < idle_cutoff),
        and_(busy, last_used < busy_cutoff),
    )


def expire_oauth_tokens(
    db: Database, settings: Settings, now: dt.datetime, batch_size: int = 1_000
) -> int:
    """Delete the expired tokens, a batch per short transaction; how many went."""
    deleted = 0
    while True:
        with db.session() as session:
            rows = session.execute(
                select(_TOKENS.c.id, _TOKENS.c.user_id)
                .where(_expired(settings, now))  # type: ignore[arg-type]
                .order_by(_TOKENS.c.id)
                .limit(batch_size)
            ).all()
            if not rows:
                return deleted
            # Re-checked in the delete: a login since the select keeps the token.
            session.execute(
                delete(_TOKENS).where(
                    _TOKENS.c.id.in_([r.id for r in rows]),
                    _expired(settings, now),  # type: ignore[arg-type]
                )
            )
        deleted += len(rows)
        per_user: dict[int, int] = {}
        for row in rows:
            per_user[row.user_id] = per_user.get(row.user_id, 0) + 1
        for user_id, count in per_user.items():
            emit(settings, "user", user_id, "token_expired", tokens=count)
        if len(rows) < batch_size:
            return deleted
