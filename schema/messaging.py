"""Messages the workers refused, with the reason, for operators to inspect or replay."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, created_at, intpk


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[intpk]
    queue_name: Mapped[str] = mapped_column(String(200), index=True)
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    actor_name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    message: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[created_at]
