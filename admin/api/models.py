"""Request and response bodies of the admin API (they make its OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from schema.scheduling import ScheduledJobConfig
from schema.storable import column_length


class Problem(BaseModel):
    """An error: a sentence, or FastAPI's list of field errors for a malformed request."""

    detail: str | list[dict[str, Any]]


class ScheduleEntry(BaseModel):
    name: str
    schedule: str
    schedule_words: str
    args: dict[str, Any]


class Job(BaseModel):
    name: str
    description: str
    schedule: str | None
    schedule_words: str
    schedule_source: str
    timezone: str
    enabled: bool
    notify_on_success: bool
    next_run: dt.datetime | None
    last_run: dt.datetime | None
    last_status: str | None
    last_success: dt.datetime | None
    last_skip: dt.datetime | None
    override_times: str | None = None
    override_interval_s: int | None = None
    then: list[str] = Field(description="Jobs queued when a run succeeds (chain).")
    entries: list[ScheduleEntry] = Field(description="More schedules, with their arguments.")
    overlap: str
    catchup: str
    interval_from: str = Field(description="epoch: fixed slots; last_start: from the last start.")
    pause_after_failures: int | None = Field(description="Failed runs in a row that disable it.")
    consecutive_failures: int
    disabled_reason: str | None


class Run(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_name: str
    trigger: str
    status: str
    scheduled_for: dt.datetime | None
    queued_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    attempts: int
    records_processed: int
    output: str
    error: str | None
    skip_reason: str | None
    cancel_requested_at: dt.datetime | None = None
    retry_of: int | None = None
    entry: str = Field(description="The schedule entry of a slot ('' for the job's own).")
    args: dict[str, Any] | None = Field(
        validation_alias=AliasChoices("args", "kwargs"),
        description="The keyword arguments the job was called with.",
    )
    triggered_by: int | None = Field(description="The run that queued this one (chain, code).")


class RunWithChain(Run):
    """A run, the run that queued it, and the runs it queued."""

    parent: Run | None
    children: list[Run]


class Triggered(BaseModel):
    run_id: int


class Trigger(BaseModel):
    """Run now: the job's keyword arguments, checked against its signature before
    anything is queued, and an optional idempotency key (the same key again returns
    the same run)."""

    model_config = ConfigDict(extra="forbid")

    args: dict[str, Any] = Field(default_factory=dict, examples=[{"source": "A"}])
    idempotency_key: str | None = Field(None, min_length=1, max_length=150)


class Backfill(BaseModel):
    """Queue one run per slot due in (start, end]: both with a time zone, in the past."""

    model_config = ConfigDict(extra="forbid")

    start: dt.datetime = Field(examples=["2026-11-30T00:00:00Z"])
    end: dt.datetime = Field(examples=["2026-11-30T06:00:00Z"])
    max: int | None = Field(None, ge=1, le=100_000, description="Refuse more runs than this.")
    entry: str | None = Field(None, max_length=100, description="Only this schedule entry.")


class Backfilled(BaseModel):
    run_ids: list[int]


class ScheduleOverride(BaseModel):
    """Daily times *or* an interval; neither clears the override."""

    model_config = ConfigDict(extra="forbid")

    # As long as the column that stores them (normalizing can lengthen them further:
    # "2:30" is stored "02:30"; control.set_schedule_override checks that).
    times: str | None = Field(
        None, max_length=column_length(ScheduledJobConfig.override_times), examples=["02:30,14:00"]
    )
    interval: str | None = Field(None, max_length=100, examples=["05:00", "10 minutes"])


class NotifyOnSuccess(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class Release(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["run-missed", "reschedule"]


class Released(BaseModel):
    queued: list[str]


class Held(BaseModel):
    held: bool


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    held: bool | None


class DeadLetter(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    queue_name: str
    message_id: str
    actor_name: str
    reason: str
    message: dict[str, Any]
    created_at: dt.datetime


class Count(BaseModel):
    count: int


class CancelOutcome(BaseModel):
    run_id: int
    status: Literal["canceled", "running"]  # running: requested, the job stops at its next check


class AuditEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: dt.datetime
    actor: str
    token_id: int | None
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str | None


class Me(BaseModel):
    """The calling token: the page shows only the controls its scope allows."""

    name: str
    scope: Literal["viewer", "operator", "admin"]


class Token(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scope: str
    created_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    scope: Literal["viewer", "operator", "admin"]
    expires_in_days: int | None = Field(None, ge=1, le=3650)


class CreatedToken(BaseModel):
    id: int
    name: str
    scope: str
    expires_at: dt.datetime
    token: str = Field(description="shown once; only its hash is stored")
