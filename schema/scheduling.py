"""Scheduled-job configuration, the scheduler's own state, and the run history.

``JobRun`` has a unique (job_name, entry, scheduled_for) key: it is what makes a
scheduled slot of a job's schedule entry run exactly once, whatever duplicate ticks,
racing dispatchers or a backfill do. Manual runs have no slot (NULL), and NULLs never
collide in a unique key. A second unique key, (job_name, idempotency_key), makes a
chained run (key ``after:<parent run id>``), a run queued from a job's code, and a run
now with a client's idempotency key exist once, however often they are asked for.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, BigIntPK, created_at, intpk

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "skipped", "canceled")
FINISHED_STATUSES = ("succeeded", "failed", "skipped", "canceled")
CLIENT_KEY_PREFIX = "client:"  # run now's idempotency keys (CLI, API, producers.jobs)
RUN_TRIGGERS = ("schedule", "catchup", "manual", "message", "retry", "chain", "job", "backfill")


class ScheduledJobConfig(Base):
    """An operator's overrides for one job (pgeu): times *or* interval, never both."""

    __tablename__ = "scheduled_job_configs"
    __table_args__ = (
        CheckConstraint(
            "override_times IS NULL OR override_interval_s IS NULL", name="times_xor_interval"
        ),
        CheckConstraint(
            "override_interval_s IS NULL OR override_interval_s > 0", name="interval_positive"
        ),
    )

    job_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    notify_on_success: Mapped[bool] = mapped_column(default=False)
    override_times: Mapped[str | None] = mapped_column(String(400))
    override_interval_s: Mapped[int | None]
    # "Reschedule as if just run": interval schedules count from here when set.
    anchor_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime | None]
    # Pause on failure (docs/WORKFLOWS.md): failed runs in a row, reset by a success
    # and by enabling the job again; why the job disabled itself, if it did.
    consecutive_failures: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class SchedulerState(Base):
    """A single row (id = 1): hold flag and the dispatcher's progress."""

    __tablename__ = "scheduler_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    held: Mapped[bool] = mapped_column(default=False)
    held_at: Mapped[dt.datetime | None]
    last_tick_at: Mapped[dt.datetime | None]
    # Every slot up to (excluding) this instant has been considered by the dispatcher.
    dispatched_until: Mapped[dt.datetime | None]


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("job_name", "entry", "scheduled_for"),
        UniqueConstraint("job_name", "idempotency_key"),
        Index("ix_job_runs_job_name_queued_at", "job_name", "queued_at"),
    )

    id: Mapped[intpk]
    job_name: Mapped[str] = mapped_column(String(100))
    scheduled_for: Mapped[dt.datetime | None]
    trigger: Mapped[str] = mapped_column(String(20), default="schedule")
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    message_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    queued_at: Mapped[created_at]
    # Set once the message is on the broker; a queued run without it is re-published
    # by the next tick (outbox), so a broker outage between commit and send loses nothing.
    published_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    records_processed: Mapped[int] = mapped_column(default=0)
    output: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))
    # Refreshed by the worker process while the run executes: a fresh one means a second
    # delivery of the message (broker restart, consumer_timeout) must not run it again;
    # a stale one means the worker died and the redelivery may take over.
    heartbeat_at: Mapped[dt.datetime | None]
    # An operator asked to cancel it: a queued run is canceled at once; a running one's
    # job sees ``ctx.cancelled`` and stops, and however it ends it is recorded canceled.
    cancel_requested_at: Mapped[dt.datetime | None]
    # The failed run this run retries (an operator's retry).
    retry_of: Mapped[int | None] = mapped_column(
        ForeignKey("job_runs.id", ondelete="SET NULL"), index=True
    )
    # Workflows (docs/WORKFLOWS.md): the schedule entry a slot belongs to ("" for the
    # job's own schedule), the keyword arguments the job is called with, the run whose
    # success (chain) or code (ctx.queue_job) queued this one, and the key that makes
    # such a run, or a client's run now, exist once.
    entry: Mapped[str] = mapped_column(String(100), default="", server_default="")
    kwargs: Mapped[dict[str, Any] | None]
    triggered_by: Mapped[int | None] = mapped_column(
        BigIntPK, ForeignKey("job_runs.id", ondelete="SET NULL"), index=True
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
