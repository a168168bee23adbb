"""Install jobs (a plan run against an org), their per-step results, and preflights."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, created_at, intpk

JOB_STATUSES = ("created", "started", "complete", "failed", "canceled")
# What a user reads in a job's exception, exactly as MetaDeploy words it.
JOB_CANCELED = "Job canceled."
JOB_INTERRUPTED = "The installation job was interrupted. Please retry the installation."
STEP_STATUSES = ("ok", "warn", "error", "skip")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # One started job per org: the database enforces it, not only the client.
        Index(
            "uq_jobs_one_started_per_org",
            "org_id",
            unique=True,
            postgresql_where=text("status = 'started'"),
            sqlite_where=text("status = 'started'"),
        ),
        Index("ix_jobs_unenqueued", "enqueued_at", "created_at"),
    )

    id: Mapped[intpk]
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(String(40), index=True)
    steps: Mapped[list[Any]] = mapped_column(default=list)  # selected step ids, in order
    status: Mapped[str] = mapped_column(String(20), default="created", index=True)
    log: Mapped[str] = mapped_column(Text, default="")
    exception: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(64))
    enqueued_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    success_at: Mapped[dt.datetime | None]
    canceled_at: Mapped[dt.datetime | None]
    cancel_requested_at: Mapped[dt.datetime | None]
    created_at: Mapped[created_at] = mapped_column(index=True)
    edited_at: Mapped[dt.datetime | None]


class JobStepResult(Base):
    """One step's outcome; the unique key means a step is never recorded twice."""

    __tablename__ = "job_step_results"
    __table_args__ = (UniqueConstraint("job_id", "step_id"),)

    id: Mapped[intpk]
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(10))  # ok | warn | error | skip
    message: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class PreflightResult(Base):
    __tablename__ = "preflight_results"
    __table_args__ = (Index("ix_preflight_results_lookup", "org_id", "user_id", "plan_id"),)

    id: Mapped[intpk]
    org_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    # started | complete | failed | canceled
    status: Mapped[str] = mapped_column(String(20), default="started", index=True)
    is_valid: Mapped[bool] = mapped_column(default=True)
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    exception: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[created_at] = mapped_column(index=True)
    edited_at: Mapped[dt.datetime | None]


def preflight_has_errors(results: dict[str, Any]) -> bool:
    """Whether any check of a preflight's results ended in ``error``."""
    return any(r.get("status") == "error" for r in results.values() if isinstance(r, dict))


# Per-step preflight results (MetaDeploy's ``optional_step_ids``): a step whose check
# ended optional, hide or skip need not be selected even when the plan requires it; one
# that ended hide or skip is never run (dropped from the job's steps).
OPTIONAL_STATUSES = ("optional", "hide", "skip")
NEVER_RUN_STATUSES = ("hide", "skip")
CHECK_ACTIONS = ("error", "warn", *OPTIONAL_STATUSES)


def _step_ids(results: dict[str, Any], statuses: tuple[str, ...]) -> set[int]:
    return {
        int(r["step_id"])
        for r in results.values()
        if isinstance(r, dict) and r.get("step_id") is not None and r.get("status") in statuses
    }


def optional_step_ids(results: dict[str, Any]) -> set[int]:
    """Steps the preflight made optional (its ``optional``, ``hide`` or ``skip`` results)."""
    return _step_ids(results, OPTIONAL_STATUSES)


def never_run_step_ids(results: dict[str, Any]) -> set[int]:
    """Steps the preflight said to hide or skip: an install leaves them out."""
    return _step_ids(results, NEVER_RUN_STATUSES)


def preflight_is_ready(preflight: PreflightResult, lifetime_minutes: int, now: dt.datetime) -> bool:
    """Usable for an install: finished, still valid, recent, and without errors."""
    lifetime = dt.timedelta(minutes=lifetime_minutes)
    return (
        preflight.status == "complete"
        and preflight.is_valid
        and preflight.created_at > now - lifetime
        and not preflight_has_errors(preflight.results)
    )
