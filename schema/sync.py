"""Remote resources mirrored by Waldur-style sync jobs, and each source's cursor."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, intpk


class RemoteResource(Base):
    __tablename__ = "remote_resources"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[intpk]
    source: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    # provisioning | ok | updating | deleting | erred | terminated
    state: Mapped[str] = mapped_column(String(20), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    end_date: Mapped[dt.datetime | None] = mapped_column(index=True)
    state_changed_at: Mapped[dt.datetime]
    remote_updated_at: Mapped[dt.datetime | None]
    synced_at: Mapped[dt.datetime]
    missing_since: Mapped[dt.datetime | None]


class SyncCursor(Base):
    """Where the last good pull of a source ended; the next one starts from here."""

    __tablename__ = "sync_cursors"

    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(String(255))
    last_success_at: Mapped[dt.datetime | None]
