"""A job's effective schedule: the operator's override if any, else the code's default."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schema.engine import Database
from schema.scheduling import JobRun, ScheduledJobConfig
from tickwork.errors import UnknownJobError
from tickwork.schedule_words import interval_words
from tickwork.schedules import (
    DailyTimesSchedule,
    IntervalSchedule,
    Schedule,
    parse_schedule,
    parse_times,
    zone,
)
from workers.registry import JobSpec


@dataclass(frozen=True)
class EffectiveSchedule:
    schedule: Schedule | None  # None: on demand only
    enabled: bool
    notify_on_success: bool
    source: str  # "default" | "override times" | "override interval"


def effective_schedule(
    spec: JobSpec, config: ScheduledJobConfig | None, last_start: dt.datetime | None = None
) -> EffectiveSchedule:
    """``last_start``: when the job last started, for ``interval_from="last_start"``
    (then its interval counts from there, whole seconds; see :func:`last_starts`)."""
    enabled = True if config is None else config.enabled
    notify = False if config is None else config.notify_on_success
    anchor_at = config.anchor_at if config is not None else None
    if spec.interval_from == "last_start" and last_start is not None:
        start = last_start.replace(microsecond=0)
        anchor_at = start if anchor_at is None else max(anchor_at, start)
    if config is not None and config.override_times:
        schedule = _override_times(config.override_times, spec.timezone)
        return EffectiveSchedule(schedule, enabled, notify, "override times")
    if config is not None and config.override_interval_s:
        schedule = _override_interval(config.override_interval_s, spec.timezone, anchor_at)
        return EffectiveSchedule(schedule, enabled, notify, "override interval")
    if spec.schedule is None:
        return EffectiveSchedule(None, enabled, notify, "default")
    return EffectiveSchedule(
        parse_schedule(spec.schedule, spec.timezone, anchor=anchor_at), enabled, notify, "default"
    )


@dataclass(frozen=True)
class EntrySchedule:
    """One schedule entry of a job as the dispatcher runs it: ``entry`` "" is the job's
    own (operator overrides apply to it), the others come from ``@job(entries=...)``."""

    entry: str
    schedule: Schedule
    kwargs: dict[str, Any] | None


def entry_schedules(
    spec: JobSpec, config: ScheduledJobConfig | None, last_start: dt.datetime | None = None
) -> list[EntrySchedule]:
    """Every schedule entry of the job (its own effective schedule first); the job's
    enabled flag is not applied here."""
    out = []
    own = effective_schedule(spec, config, last_start).schedule
    if own is not None:
        out.append(EntrySchedule("", own, None))
    anchor = config.anchor_at if config is not None else None
    for entry in spec.entries:
        schedule = parse_schedule(entry.schedule, entry.timezone or spec.timezone, anchor=anchor)
        out.append(EntrySchedule(entry.name, schedule, dict(entry.kwargs) or None))
    return out


# Cached like parse_schedule: the dispatcher asks on every tick for every job.
@functools.lru_cache(maxsize=16_384)
def _override_times(times: str, timezone: str) -> Schedule:
    return DailyTimesSchedule(times, zone(timezone), times=parse_times(times))


@functools.lru_cache(maxsize=16_384)
def _override_interval(every_s: int, timezone: str, anchor: dt.datetime | None) -> Schedule:
    interval = IntervalSchedule(interval_words(every_s), zone(timezone), every_s=every_s)
    if anchor is not None:
        interval.anchor = anchor
    return interval


def last_starts(session: Session, jobs: Iterable[JobSpec]) -> dict[str, dt.datetime]:
    """When each job with ``interval_from="last_start"`` last started (its own schedule
    or a run now: a manual run shifts the next slot, as in pgeu)."""
    names = [spec.name for spec in jobs if spec.interval_from == "last_start"]
    if not names:
        return {}
    rows = session.execute(
        select(JobRun.job_name, func.max(JobRun.started_at))
        .where(JobRun.job_name.in_(names), JobRun.entry == "", JobRun.started_at.is_not(None))
        .group_by(JobRun.job_name)
    )
    return {name: _utc(started) for name, started in rows if started is not None}


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def check_overrides_name_known_jobs(db: Database, known: Iterable[str]) -> None:
    """Every schedule override in the database names a declared job; raises otherwise."""
    known = set(known)
    with db.session() as session:
        names = list(session.scalars(select(ScheduledJobConfig.job_name)))
    for name in names:
        if name not in known:
            raise UnknownJobError(
                f"scheduled_job_configs has settings for {name!r}, which is not a registered "
                f"job (known: {', '.join(sorted(known))})"
            )
