"""What can be installed: products → versions → plans → steps, and translations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from schema.base import Base, created_at, intpk, str255


class Product(Base):
    __tablename__ = "products"

    id: Mapped[intpk]
    slug: Mapped[str255] = mapped_column(unique=True)
    title: Mapped[str255]
    description: Mapped[str] = mapped_column(Text, default="")
    translations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[created_at]

    versions: Mapped[list[Version]] = relationship(back_populates="product")


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("product_id", "label"),)

    id: Mapped[intpk]
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[created_at]

    product: Mapped[Product] = relationship(back_populates="versions")
    plans: Mapped[list[Plan]] = relationship(back_populates="version")


class Plan(Base):
    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("version_id", "slug"),)

    id: Mapped[intpk]
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    slug: Mapped[str255]
    title: Mapped[str255]
    description: Mapped[str] = mapped_column(Text, default="")
    translations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Filled by calculate_average_plan_runtimes: median seconds of recent successes.
    average_duration_s: Mapped[float | None]
    created_at: Mapped[created_at]

    version: Mapped[Version] = relationship(back_populates="plans")
    steps: Mapped[list[Step]] = relationship(back_populates="plan", order_by="Step.order")
    preflight_checks: Mapped[list[PreflightCheck]] = relationship(
        back_populates="plan", order_by="PreflightCheck.order"
    )


class Step(Base):
    """One step of a plan: a Python callable path or a command, run by an OrgBackend."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("plan_id", "order"),)

    id: Mapped[intpk]
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    order: Mapped[int]
    name: Mapped[str255]
    kind: Mapped[str] = mapped_column(String(20), default="task")  # task | flow | command
    path: Mapped[str] = mapped_column(Text)
    is_required: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str] = mapped_column(Text, default="")
    translations: Mapped[dict[str, Any]] = mapped_column(default=dict)

    plan: Mapped[Plan] = relationship(back_populates="steps")


class PreflightCheck(Base):
    """A check run by the preflight job; ``action_on_fail`` decides error vs warning."""

    __tablename__ = "preflight_checks"
    __table_args__ = (UniqueConstraint("plan_id", "order"),)

    id: Mapped[intpk]
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    order: Mapped[int]
    name: Mapped[str255]
    path: Mapped[str] = mapped_column(Text)
    # What a failing check means, as MetaDeploy's per-step preflight results: error | warn
    # (plan-wide or on its step), optional | hide | skip (its step need not / must not run).
    action_on_fail: Mapped[str] = mapped_column(String(20), default="error")
    # The plan step the check is about (MetaDeploy keys preflight results by step); none:
    # a plan-level check.
    step_id: Mapped[int | None] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))

    plan: Mapped[Plan] = relationship(back_populates="preflight_checks")


class Translation(Base):
    """A translated text for one field of one product, plan or step."""

    __tablename__ = "translations"
    __table_args__ = (UniqueConstraint("language", "model", "object_id", "field"),)

    id: Mapped[intpk]
    language: Mapped[str] = mapped_column(String(16), index=True)
    model: Mapped[str] = mapped_column(String(20))  # product | plan | step
    object_id: Mapped[int]
    field: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
