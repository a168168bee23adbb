"""Bearer-token auth: tokens are random, shown once, stored only as SHA-256, carry a
scope (viewer < operator < admin) and their own expiry time.

Every ``/api`` route declares the scope it needs with :func:`require_scope` (a test walks
``app.routes`` and fails for a route without one); a token below it gets 403 naming the
scope needed. Token create/revoke leave audit rows, like every other change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from schema.audit import SYSTEM_ACTOR, Actor, record_audit
from schema.base import utcnow
from schema.engine import Database
from schema.identity import TOKEN_SCOPES, ApiToken

TOKEN_PREFIX = "tw_"
#: The attribute a scope dependency carries, so the route walk can find it.
SCOPE_MARK = "tickwork_scope"


@dataclass(frozen=True)
class NewToken:
    id: int
    name: str
    token: str  # the only time the plain token exists
    scope: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class Caller:
    """Who is calling the API: the audit log's actor."""

    token_id: int
    name: str
    scope: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scope_allows(granted: str, needed: str) -> bool:
    """Scopes are ordered: a higher one may do everything a lower one may."""
    return TOKEN_SCOPES.index(granted) >= TOKEN_SCOPES.index(needed)


def check_scope(scope: str) -> str:
    if scope not in TOKEN_SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(TOKEN_SCOPES)}")
    return scope


def expires_at(row: ApiToken, default_days: int) -> dt.datetime:
    """The token's stored expiry; for tokens from before it was stored, created + days."""
    if row.expires_at is not None:
        return row.expires_at
    return row.created_at + dt.timedelta(days=default_days)


def create_token(
    db: Database,
    name: str,
    *,
    scope: str = "admin",
    expires_in_days: int | None = None,
    actor: Actor | str = SYSTEM_ACTOR,
) -> NewToken:
    """A new token. ``expires_in_days`` None: TICKWORK_API_TOKEN_EXPIRE_AFTER_DAYS."""
    name = name.strip()
    if not name or len(name) > 255:
        raise ValueError("token name must be 1 to 255 characters")
    check_scope(scope)
    days = db.settings.api_token_expire_after_days if expires_in_days is None else expires_in_days
    if not 1 <= days <= 3650:
        raise ValueError(f"expiry must be 1 to 3650 days, not {days}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with db.session() as session:
        row = ApiToken(
            name=name,
            token_hash=token_hash(token),
            prefix=token[:8],
            scope=scope,
            created_at=now,
            expires_at=now + dt.timedelta(days=days),
        )
        session.add(row)
        session.flush()
        record_audit(
            session,
            actor,
            "token-create",
            f"token:{row.id}",
            None,
            _token_state(row),
        )
        assert row.expires_at is not None
        return NewToken(row.id, name, token, scope, row.expires_at)


def _token_state(row: ApiToken) -> dict[str, Any]:
    return {
        "name": row.name,
        "scope": row.scope,
        "prefix": row.prefix,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }


def revoke_token(db: Database, token_id: int, *, actor: Actor | str = SYSTEM_ACTOR) -> bool:
    with db.session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            return False
        record_audit(session, actor, "token-revoke", f"token:{row.id}", _token_state(row), None)
        session.delete(row)
        return True


def list_tokens(db: Database) -> list[ApiToken]:
    with db.session() as session:
        return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def check_token(db: Database, token: str, max_age_days: int) -> ApiToken | None:
    """The token's row if it is known and not expired (and note its use), else None.
    ``max_age_days``: the expiry of tokens created before expiry was stored."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with db.session() as session:
        row = session.scalars(
            select(ApiToken).where(ApiToken.token_hash == token_hash(token))
        ).first()
        now = utcnow()
        if row is None or expires_at(row, max_age_days) <= now:
            return None
        row.last_used_at = now
        return row


def scope_of(dependency: Callable[..., Any]) -> str | None:
    """The scope a route dependency requires, if it is one made by require_scope."""
    return getattr(dependency, SCOPE_MARK, None)


# --- FastAPI dependencies ------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False, description="An API token from `tickwork api-token create`")


def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The calling token (401 without a valid one). ``create_app`` puts the database and
    settings on ``app.state``."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    db: Database = request.app.state.tickwork_db
    days = request.app.state.tickwork_settings.api_token_expire_after_days
    row = check_token(db, credentials.credentials, days)
    if row is None:
        raise HTTPException(401, "unknown or expired token", {"WWW-Authenticate": "Bearer"})
    return Caller(token_id=row.id, name=row.name, scope=row.scope)


def require_scope(scope: str) -> Callable[[Caller], Caller]:
    """A dependency every ``/api`` route declares: the caller, if its token's scope is
    ``scope`` or higher; else 403 naming the scope needed."""
    check_scope(scope)

    def scoped(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
        if not scope_allows(caller.scope, scope):
            raise HTTPException(
                403,
                f"this needs a token with the {scope} scope; token {caller.name!r} has "
                f"{caller.scope} (create one with `tickwork api-token create NAME "
                f"--scope {scope}`)",
            )
        return caller

    setattr(scoped, SCOPE_MARK, scope)
    scoped.__name__ = f"require_{scope}"
    return scoped


def actor(caller: Caller) -> Actor:
    """The audit log's actor for an API caller: the token's name (and id)."""
    return Actor(caller.name, caller.token_id)
