"""Who is acting: users, their OAuth tokens (encrypted), API tokens (hashed), and the
short-lived credentials Barycenter cleans up (sessions, refresh tokens, WebAuthn
challenges, device codes)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from schema.base import Base, created_at, intpk, str255
from schema.crypto import EncryptedText


class User(Base):
    __tablename__ = "users"

    id: Mapped[intpk]
    username: Mapped[str255] = mapped_column(unique=True)
    email: Mapped[str | None] = mapped_column(String(255))
    is_staff: Mapped[bool] = mapped_column(default=False)
    last_login: Mapped[dt.datetime | None] = mapped_column(index=True)
    created_at: Mapped[created_at]

    oauth_tokens: Mapped[list[OAuthToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class OAuthToken(Base):
    """An org's OAuth credentials; both tokens are Fernet-encrypted at rest."""

    __tablename__ = "oauth_tokens"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(40), default="salesforce")
    instance_url: Mapped[str | None] = mapped_column(String(255))
    access_token: Mapped[str] = mapped_column(EncryptedText)
    refresh_token: Mapped[str | None] = mapped_column(EncryptedText)
    created_at: Mapped[created_at] = mapped_column(index=True)

    user: Mapped[User] = relationship(back_populates="oauth_tokens")


#: What a token may do, each including the ones before it: ``viewer`` reads; ``operator``
#: also runs, enables/disables, holds/releases, replays dead letters, cancels and retries;
#: ``admin`` also changes schedules and notifications, purges dead letters, and reads the
#: token list.
TOKEN_SCOPES = ("viewer", "operator", "admin")


class ApiToken(Base):
    """A bearer token for the admin API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("scope IN ('viewer', 'operator', 'admin')", name="scope_known"),
    )

    id: Mapped[intpk]
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str255]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[created_at] = mapped_column(index=True)
    last_used_at: Mapped[dt.datetime | None]
    scope: Mapped[str] = mapped_column(String(20), default="viewer")
    # Stored per token since migration 0004; NULL (tokens created before it): created_at
    # plus TICKWORK_API_TOKEN_EXPIRE_AFTER_DAYS, as it was computed then.
    expires_at: Mapped[dt.datetime | None] = mapped_column(index=True)


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[intpk]
    session_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class RefreshToken(Base):
    """A refresh token; rotation links each token to the one that replaced it."""

    __tablename__ = "refresh_tokens"

    id: Mapped[intpk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    replaced_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="SET NULL")
    )


class WebauthnChallenge(Base):
    __tablename__ = "webauthn_challenges"

    id: Mapped[intpk]
    challenge: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    ceremony: Mapped[str] = mapped_column(String(20), default="authentication")
    created_at: Mapped[created_at] = mapped_column(index=True)


class DeviceCode(Base):
    """An OAuth device authorization grant in progress."""

    __tablename__ = "device_codes"

    id: Mapped[intpk]
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_id: Mapped[str255]
    scope: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
