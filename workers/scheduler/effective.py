"""A job's effective schedule: the operator's override if any, else the code's default."""

from __future__ import annotations

from dataclasses import dataclass

from schema.scheduling import ScheduledJobConfig
from workers.registry import JobSpec
from workers.scheduler.schedules import (
    DailyTimesSchedule,
    IntervalSchedule,
    Schedule,
    parse_schedule,
    parse_times,
    zone,
)


@dataclass(frozen=True)
class EffectiveSchedule:
    schedule: Schedule | None  # None: on demand only
    enabled: bool
    notify_on_success: bool
    source: str  # "default" | "override times" | "override interval"


def effective_schedule(spec: JobSpec, config: ScheduledJobConfig | None) -> EffectiveSchedule:
    enabled = True if config is None else config.enabled
    notify = False if config is None else config.notify_on_success
    if config is not None and config.override_times:
        tz = zone(spec.timezone)
        schedule: Schedule = DailyTimesSchedule(
            config.override_times, tz, times=parse_times(config.override_times)
        )
        return EffectiveSchedule(schedule, enabled, notify, "override times")
    if config is not None and config.override_interval_s:
        interval = IntervalSchedule(
            f"every {config.override_interval_s} seconds",
            zone(spec.timezone),
            every_s=config.override_interval_s,
        )
        if config.anchor_at is not None:
            interval.anchor = config.anchor_at
        schedule = interval
        return EffectiveSchedule(schedule, enabled, notify, "override interval")
    if spec.schedule is None:
        return EffectiveSchedule(None, enabled, notify, "default")
    anchor = config.anchor_at if config is not None else None
    return EffectiveSchedule(
        parse_schedule(spec.schedule, spec.timezone, anchor=anchor), enabled, notify, "default"
    )
