"""Bearer-token auth: tokens are random, shown once, stored only as SHA-256, and expire
after ``TICKWORK_API_TOKEN_EXPIRE_AFTER_DAYS`` (cleanup_user_data also deletes them)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from schema.base import utcnow
from schema.engine import Database
from schema.identity import ApiToken

TOKEN_PREFIX = "tw_"


@dataclass(frozen=True)
class NewToken:
    id: int
    name: str
    token: str  # the only time the plain token exists


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Database, name: str) -> NewToken:
    name = name.strip()
    if not name or len(name) > 255:
        raise ValueError("token name must be 1 to 255 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as session:
        row = ApiToken(name=name, token_hash=token_hash(token), prefix=token[:8])
        session.add(row)
        session.flush()
        return NewToken(row.id, name, token)


def revoke_token(db: Database, token_id: int) -> bool:
    with db.session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            return False
        session.delete(row)
        return True


def list_tokens(db: Database) -> list[ApiToken]:
    with db.session() as session:
        return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def check_token(db: Database, token: str, max_age_days: int) -> ApiToken | None:
    """The token's row if it is known and not expired (and note its use), else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with db.session() as session:
        row = session.scalars(
            select(ApiToken).where(ApiToken.token_hash == token_hash(token))
        ).first()
        if row is None or row.created_at < utcnow() - dt.timedelta(days=max_age_days):
            return None
        row.last_used_at = utcnow()
        return row
