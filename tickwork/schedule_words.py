"""Schedules said in words: the one voice every command, API field and page uses.

One style everywhere: lower case, 24-hour clock (``02:30``, ``:05`` past the hour,
``14:00:05`` when seconds matter), "and" before the last item, ``...`` for a long
regular series, and the time zone named in brackets unless it is UTC. The words are
built from the parsed sets (:class:`~tickwork.cron_fields.CronFields`), so they say what
the schedule does, and every valid expression gets words (a property test holds this).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable
from zoneinfo import ZoneInfo

from tickwork.cron_fields import CronFields

_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MAX_TIMES = 6  # up to this many times of day are listed one by one


def format_duration(seconds: int) -> str:
    """``300`` → ``5 minutes``: the largest whole unit."""
    for unit, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
    return f"{seconds} second" if seconds == 1 else f"{seconds} seconds"


def interval_words(every_s: int) -> str:
    """An interval runs the same in every zone, so no zone is named."""
    return "every " + format_duration(every_s)


def daily_times_words(times: Iterable[dt.time], tz: ZoneInfo) -> str:
    shown = [_clock(t.hour, t.minute, t.second) for t in times]
    return "daily at " + _join(shown) + zone_suffix(tz)


def zone_suffix(tz: ZoneInfo) -> str:
    return "" if tz.key == "UTC" else f" ({tz.key})"


def cron_words(fields: CronFields, tz: ZoneInfo) -> str:
    """What a cron expression does, e.g. ``at 00:00 on day 29 of the month in February``."""
    time = _time_phrase(fields)
    days = _day_phrase(fields)
    months = "" if len(fields.months) == 12 else "in " + _months(fields.months)
    if not days and time.startswith("at "):
        time = "daily " + time
    return " ".join(p for p in (time, days, months) if p) + zone_suffix(tz)


# --- time of day ------------------------------------------------------------------------


def _time_phrase(f: CronFields) -> str:
    seconds, minutes, hours = sorted(f.seconds), sorted(f.minutes), sorted(f.hours)
    all_hours = len(hours) == 24
    if not all_hours and len(seconds) * len(minutes) * len(hours) <= _MAX_TIMES:
        return "at " + _join([_clock(h, m, s) for h in hours for m in minutes for s in seconds])
    if not all_hours and len(seconds) == 1 and len(minutes) == 1:
        # e.g. "every 2 hours at :30" or "at 09:00, 10:00, ..., 17:00"
        (s,), (m,) = seconds, minutes
        step = _uniform_step(hours, 24)
        if step and hours[0] == 0:
            return f"every {step} hours at {_past_hour(m, s)}"
        return "at " + _series(hours, lambda h: _clock(h, m, s))
    within = _within_hour(seconds, minutes)
    if all_hours:
        return within
    return f"{within}, in hour{'s' if len(hours) > 1 else ''} " + _series(hours, str)


def _within_hour(seconds: list[int], minutes: list[int]) -> str:
    """What happens inside each matching hour."""
    all_minutes, all_seconds = len(minutes) == 60, len(seconds) == 60
    if all_minutes and all_seconds:
        return "every second"
    if all_minutes and seconds == [0]:
        return "every minute"
    if all_minutes:
        return (
            "every minute at second" + ("s " if len(seconds) > 1 else " ") + _series(seconds, str)
        )
    if len(seconds) == 1:
        (s,) = seconds
        step = _uniform_step(minutes, 60)
        if step and minutes[0] == 0 and s == 0:
            return f"every {step} minutes"
        shown = _series(minutes, lambda m: _past_hour(m, s, always_seconds=s != 0))
        return (f"every {step} minutes at " if step else "hourly at ") + shown
    if all_seconds:
        return (
            "every second of minute"
            + ("s " if len(minutes) > 1 else " ")
            + _series(minutes, lambda m: f":{m:02d}")
        )
    return (
        "at second"
        + ("s " if len(seconds) > 1 else " ")
        + _series(seconds, str)
        + " of minute"
        + ("s " if len(minutes) > 1 else " ")
        + _series(minutes, lambda m: f":{m:02d}")
    )


def _uniform_step(values: list[int], size: int) -> int:
    """n when values are every n-th of the field's size (n dividing it), else 0."""
    if len(values) < 2:
        return 0
    step = values[1] - values[0]
    if size % step or values[0] >= step or len(values) != size // step:
        return 0
    return step if all(b - a == step for a, b in itertools.pairwise(values)) else 0


# --- days and months ----------------------------------------------------------------------


def _day_phrase(f: CronFields) -> str:
    if f.every_day:
        return ""
    dom = "" if f.all_days else _days_of_month(f)
    dow = "" if f.all_weekdays else _weekdays(f.weekdays)
    if f.day_or:
        return f"on {dom} or on {dow}"
    if dom and dow:
        return f"on {dom} when that is a {dow.replace(' and ', ' or ')}"
    return f"on {dom or dow}"


def _days_of_month(f: CronFields) -> str:
    days = sorted(f.days)
    named = []
    if days:
        named.append(("day " if len(days) == 1 else "days ") + _series(days, str))
    if f.last_day:
        named.append("the last day")
    return " and ".join(named) + " of the month"


def _weekdays(weekdays: frozenset[int]) -> str:
    # Monday first, so that Friday-Monday reads as a run.
    order = [d for d in (1, 2, 3, 4, 5, 6, 0) if d in weekdays]
    positions = [(d - 1) % 7 for d in order]
    runs = _runs(positions)
    parts: list[str] = []
    for run in runs:
        names = [_WEEKDAYS[(p + 1) % 7] for p in run]
        parts += [f"{names[0]} to {names[-1]}"] if len(run) >= 3 else names
    return _join(parts)


def _months(months: frozenset[int]) -> str:
    parts: list[str] = []
    for run in _runs(sorted(months)):
        names = [_MONTHS[m - 1] for m in run]
        parts += [f"{names[0]} to {names[-1]}"] if len(run) >= 3 else names
    return _join(parts)


# --- lists ----------------------------------------------------------------------------------


def _clock(hour: int, minute: int, second: int = 0) -> str:
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def _past_hour(minute: int, second: int, always_seconds: bool = False) -> str:
    return f":{minute:02d}" + (f":{second:02d}" if second or always_seconds else "")


def _series(values: list[int], show: Callable[[int], str]) -> str:
    """``1, 3, ..., 31`` for a long regular series, else every value listed."""
    if len(values) >= 4:
        step = values[1] - values[0]
        if all(b - a == step for a, b in itertools.pairwise(values)):
            return f"{show(values[0])}, {show(values[1])}, ..., {show(values[-1])}"
    return _join([show(v) for v in values])


def _runs(values: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return runs


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
