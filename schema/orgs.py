"""Where plans are installed: orgs, and scratch orgs created on a user's request."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, created_at, intpk


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[intpk]
    org_id: Mapped[str] = mapped_column(String(40), unique=True)
    org_type: Mapped[str] = mapped_column(String(20), default="production")
    is_scratch: Mapped[bool] = mapped_column(default=False)
    instance_url: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[created_at]


class ScratchOrg(Base):
    """A scratch org request; ``email`` is wiped once the org has been created."""

    __tablename__ = "scratch_orgs"

    id: Mapped[intpk]
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    email: Mapped[str | None] = mapped_column(String(255))
    org_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # started | complete | failed | canceled | deleted
    status: Mapped[str] = mapped_column(String(20), default="started", index=True)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    exception: Mapped[str | None] = mapped_column(Text)
    enqueued_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[created_at]
    updated_at: Mapped[dt.datetime | None]
