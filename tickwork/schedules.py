"""Schedule expressions: what they mean, when they fire, and how to say them in words.

Accepted (each in an IANA time zone, UTC by default):

- 5-field cron, ``@hourly``/``@daily``/``@weekly``/``@monthly``/``@yearly``;
  Sunday is 0 or 7;
- 6-field cron with **seconds first**, as Barycenter writes it (``0 30 * * * *`` is
  hourly at :30:00) — croniter wants seconds last, so the field is moved;
- intervals: ``10 minutes``, ``2 hours``, ``1 day``, ``90 seconds``, and pgeu's
  clock notation as ``every MM:SS`` / ``every HH:MM:SS`` (a bare clock is a time of
  day; the override-interval field takes ``MM:SS`` bare, see :func:`parse_interval`);
- daily times: ``HH:MM[:SS][,HH:MM[:SS]...]``.

DST rule: each local wall-clock slot fires once. On the fall-back day the repeated
hour's second pass (``fold=1``) is skipped; on the spring-forward day a time that does
not exist fires once, at the first instant after the gap.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from tickwork.cron_fields import CronFields, parse_fields
from tickwork.errors import ScheduleError
from tickwork.schedule_words import cron_words, daily_times_words, interval_words
from tickwork.schedule_words import format_duration as format_duration  # re-exported

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_NAMED = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNITS_S = {
    "second": 1,
    "seconds": 1,
    "sec": 1,
    "secs": 1,
    "s": 1,
    "minute": 60,
    "minutes": 60,
    "min": 60,
    "mins": 60,
    "m": 60,
    "hour": 3600,
    "hours": 3600,
    "h": 3600,
    "day": 86400,
    "days": 86400,
    "d": 86400,
    "week": 604800,
    "weeks": 604800,
    "w": 604800,
}
_INTERVAL_WORDS = re.compile(r"^(?:every\s+)?(\d+)\s*([a-z]+)$", re.ASCII)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$", re.ASCII)
# Longer than any sane interval, and well inside the database's 32-bit integer column.
MAX_INTERVAL_S = 3650 * 86_400


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() refuses or
    reads in surprising ways."""
    return text.isascii() and text.isdigit()


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Paris)"
        ) from None


class Schedule:
    """A parsed schedule. ``fires_between(a, b)`` yields aware UTC slots in (a, b]."""

    expression: str
    tz: ZoneInfo
    kind: str

    def fires_between(self, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
        t = start
        while True:
            t = self.next_after(t)
            if t > end:
                return
            yield t

    def next_after(self, t: dt.datetime) -> dt.datetime:  # pragma: no cover - abstract
        raise NotImplementedError

    def next_n(self, t: dt.datetime, count: int) -> list[dt.datetime]:
        out = []
        for _ in range(count):
            t = self.next_after(t)
            out.append(t)
        return out

    def words(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def nominal_interval_s(self) -> float:
        """The typical gap between runs (for dead-man's-switch alerts)."""
        base = dt.datetime(2025, 1, 6, tzinfo=UTC)  # a Monday, no DST in UTC
        fires = self.next_n(base, 8)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fires)]
        return max(gaps) if gaps else 0.0

    def warnings(self) -> list[str]:
        return []


@dataclass
class CronSchedule(Schedule):
    expression: str
    tz: ZoneInfo
    cron: str = ""  # croniter form, built from the parsed sets: plain lists, seconds last
    has_seconds: bool = False
    kind: str = "cron"
    fields: list[str] = field(default_factory=list)  # minute hour dom month dow (+ second)
    parsed: CronFields | None = None
    day_or: bool = True  # croniter's day_or: see CronFields.day_or

    # The last answer: (asked, answer). Building a croniter is the dispatcher's hot path,
    # and a schedule is asked again each tick with a later t that usually has the same
    # answer; any t in [asked, answer) has it. Parsed schedules are cached and shared
    # (see parse_schedule), so this pays off across ticks.
    _last: tuple[dt.datetime, dt.datetime] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def next_after(self, t: dt.datetime) -> dt.datetime:
        last = self._last
        if last is not None and last[0] <= t < last[1]:
            return last[1]
        answer = self._next_after(t)
        self._last = (t, answer)
        return answer

    def _next_after(self, t: dt.datetime) -> dt.datetime:
        # croniter walks the wall clock (naive local times, no DST arithmetic); each wall
        # time is then placed in time by the DST rule (see _instant). Placing is monotonic,
        # so the first placed time after t is the answer.
        wall = t.astimezone(self.tz).replace(tzinfo=None)
        it = croniter(self.cron, wall, day_or=self.day_or)
        while True:
            try:
                nxt: dt.datetime = it.get_next(dt.datetime)
            except CroniterBadDateError:
                raise ScheduleError(f"{self.expression!r} never fires") from None
            utc = _instant(nxt, self.tz)
            if utc > t:
                return utc

    def fires_between(self, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
        # The dispatcher asks every job, every tick, about one minute. Matching that
        # minute against the expanded fields costs microseconds; walking croniter costs
        # ~0.1 ms per job. Near a DST change and for long windows the exact croniter
        # walk is used.
        parsed = self.parsed
        if parsed is None or end - start > _FAST_WINDOW or self._near_offset_change(start, end):
            yield from super().fires_between(start, end)
            return
        seconds = sorted(parsed.seconds)
        offset = start.astimezone(self.tz).utcoffset() or dt.timedelta(0)
        minute = start.replace(second=0, microsecond=0)
        while minute <= end:
            local = minute + offset
            if (
                local.minute in parsed.minutes
                and local.hour in parsed.hours
                and local.month in parsed.months
                and _day_matches(local, parsed)
            ):
                for second in seconds:
                    slot = minute + dt.timedelta(seconds=second)
                    if start < slot <= end:
                        yield slot
            minute += _MINUTE

    def _near_offset_change(self, start: dt.datetime, end: dt.datetime) -> bool:
        before = (start - _DST_MARGIN).astimezone(self.tz).utcoffset()
        return (
            before != start.astimezone(self.tz).utcoffset()
            or before != (end + _DST_MARGIN).astimezone(self.tz).utcoffset()
        )

    def words(self) -> str:
        assert self.parsed is not None
        return cron_words(self.parsed, self.tz)

    def warnings(self) -> list[str]:
        out = []
        sec, minute, hour, dom, _month, dow = (
            [self.fields[5]] if self.has_seconds else ["0"]
        ) + self.fields[:5]
        if minute == "*" and hour == "*" and (dom != "*" or dow != "*"):
            per_day = 1440 * (60 if sec == "*" else 1)
            out.append(
                f"fires every minute all day on the days it matches ({per_day} times a day); "
                f"did you mean '0 0 {dom} {self.fields[3]} {dow}'?"
            )
        elif minute == "*" and hour not in ("*",):
            out.append("fires every minute during the matching hours; did you mean minute 0?")
        if self.has_seconds and sec == "*":
            out.append("fires every second")
        return out


_FAST_WINDOW = dt.timedelta(minutes=2)
_DST_MARGIN = dt.timedelta(hours=3)  # a skipped slot fires at most this long after a gap
_MINUTE = dt.timedelta(minutes=1)


def _day_matches(local: dt.datetime, parsed: CronFields) -> bool:
    """Cron's day rule (see CronFields.day_or), with L as the month's last day."""
    day_ok = local.day in parsed.days or (
        parsed.last_day and local.day == calendar.monthrange(local.year, local.month)[1]
    )
    weekday_ok = (local.weekday() + 1) % 7 in parsed.weekdays
    if parsed.day_or:
        return day_ok or weekday_ok
    return day_ok and weekday_ok


def _instant(wall: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant a local wall-clock time fires at: the DST rule, in one place.

    A time the fall-back repeats fires on its first pass (fold=0); a time a spring-forward
    gap removes fires at the first instant after the gap (several such times: once).
    """
    local = wall.replace(tzinfo=tz)  # fold=0
    utc = local.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != wall:
        return _gap_end(local)
    return utc


def _gap_end(missing: dt.datetime) -> dt.datetime:
    """The first instant after the spring-forward gap that ``missing`` (a local time that
    does not exist) falls in: where cron's walk fires it too, so both forms agree."""
    late = missing.replace(fold=0).astimezone(UTC)  # read with the offset before the gap
    early = missing.replace(fold=1).astimezone(UTC)  # read with the offset after it
    after = late.astimezone(missing.tzinfo).utcoffset()
    while late - early > _SECOND:  # offsets change on whole seconds
        middle = early + (late - early) / 2
        if middle.astimezone(missing.tzinfo).utcoffset() == after:
            late = middle
        else:
            early = middle
    return late.replace(microsecond=0)


_SECOND = dt.timedelta(seconds=1)


@dataclass
class IntervalSchedule(Schedule):
    expression: str
    tz: ZoneInfo
    every_s: int = 60
    anchor: dt.datetime = _EPOCH
    kind: str = "interval"

    def next_after(self, t: dt.datetime) -> dt.datetime:
        elapsed = (t - self.anchor).total_seconds()
        steps = int(elapsed // self.every_s) + 1
        return self.anchor + dt.timedelta(seconds=steps * self.every_s)

    def words(self) -> str:
        return interval_words(self.every_s)

    def nominal_interval_s(self) -> float:
        return float(self.every_s)

    def warnings(self) -> list[str]:
        return ["fires every second or more often"] if self.every_s < 5 else []


@dataclass
class DailyTimesSchedule(Schedule):
    expression: str
    tz: ZoneInfo
    times: list[dt.time] = field(default_factory=list)
    kind: str = "times"

    def next_after(self, t: dt.datetime) -> dt.datetime:
        local_day = t.astimezone(self.tz).date() - dt.timedelta(days=1)
        for _ in range(4):
            for at in self.times:
                utc = _instant(dt.datetime.combine(local_day, at), self.tz)
                if utc > t:
                    return utc
            local_day += dt.timedelta(days=1)
        raise AssertionError("unreachable: a daily schedule fires every day")

    def words(self) -> str:
        return daily_times_words(self.times, self.tz)


def parse_schedule(
    expression: str, timezone: str = "UTC", anchor: dt.datetime | None = None
) -> Schedule:
    """Parse any accepted schedule; raises :class:`ScheduleError` naming the bad part.

    Parsed schedules are cached: the dispatcher asks for every job's schedule on every
    tick, and parsing (croniter validation) dominated its CPU at 10,000 jobs. Callers
    must treat the result as read-only.
    """
    return _parse_schedule(expression, timezone, anchor)


@functools.lru_cache(maxsize=65_536)
def _parse_schedule(expression: str, timezone: str, anchor: dt.datetime | None) -> Schedule:
    tz = zone(timezone)
    expr = " ".join(str(expression).strip().split())
    if not expr:
        raise ScheduleError("empty schedule")
    lowered = expr.lower()
    if lowered.startswith("@"):
        if lowered not in _NAMED:
            raise ScheduleError(f"unknown shortcut {expr!r} (known: {', '.join(_NAMED)})")
        return _cron(expr, _NAMED[lowered], tz)
    if _INTERVAL_WORDS.match(lowered):
        return IntervalSchedule(expr, tz, every_s=_interval_words(lowered), anchor=anchor or _EPOCH)
    if lowered.startswith("every ") and _CLOCK.match(lowered[6:].strip()):
        # "every MM:SS" / "every HH:MM:SS": pgeu's interval notation, made explicit.
        every_s = parse_interval(lowered[6:])
        return IntervalSchedule(expr, tz, every_s=every_s, anchor=anchor or _EPOCH)
    if all(_CLOCK.match(p.strip()) for p in expr.split(",")):
        return DailyTimesSchedule(expr, tz, times=parse_times(expr))
    if " " in expr and not re.search(r"[a-z]{4,}", lowered.replace("@", "")):
        return _cron(expr, expr, tz)
    raise ScheduleError(
        f"cannot understand schedule {expr!r}: expected cron ('*/5 * * * *'), "
        "an interval ('10 minutes', 'every MM:SS', 'every HH:MM:SS') or daily times ('02:30,14:00')"
    )


def _cron(original: str, expr: str, tz: ZoneInfo) -> CronSchedule:
    fields = expr.split(" ")
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"cron {original!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (second first)"
        )
    has_seconds = len(fields) == 6
    # Barycenter writes seconds first; tickwork keeps them last, as croniter does.
    all_fields = fields[1:] + fields[:1] if has_seconds else fields
    parsed = parse_fields(original, all_fields, has_seconds)
    _check_day_exists(original, parsed)
    cron, day_or = parsed.croniter_expression()
    try:
        croniter(cron, dt.datetime(2025, 1, 1, tzinfo=tz), day_or=day_or)
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ScheduleError(f"cron {original!r} is invalid: {exc}") from None
    return CronSchedule(
        original,
        tz,
        cron=cron,
        has_seconds=has_seconds,
        fields=all_fields,
        parsed=parsed,
        day_or=day_or,
    )


_DAYS_IN_MONTH = {
    1: 31,
    2: 29,
    3: 31,
    4: 30,
    5: 31,
    6: 30,
    7: 31,
    8: 31,
    9: 30,
    10: 31,
    11: 30,
    12: 31,
}


def _check_day_exists(original: str, parsed: CronFields) -> None:
    """Reject crons whose day of month must match but never occurs (``0 0 31 2 *``)."""
    if parsed.last_day or parsed.day_or:  # L, or a weekday, always comes round
        return
    months, days = parsed.months, parsed.days
    if not any(day <= _DAYS_IN_MONTH[month] for month in months for day in days):
        raise ScheduleError(
            f"cron {original!r} never fires: day of month {sorted(days)} "
            f"does not occur in month {sorted(months)}"
        )


def _interval_words(text: str) -> int:
    match = _INTERVAL_WORDS.match(text)
    assert match is not None
    count, unit = int(match.group(1)), match.group(2)
    if unit not in _UNITS_S:
        raise ScheduleError(
            f"interval {text!r}: unknown unit {unit!r} (seconds, minutes, hours, days)"
        )
    if count <= 0:
        raise ScheduleError(f"interval {text!r} must be longer than zero")
    return _bounded(text, count * _UNITS_S[unit])


def _bounded(text: str, seconds: int) -> int:
    if seconds > MAX_INTERVAL_S:
        raise ScheduleError(f"interval {text!r} is longer than the maximum of 3650 days")
    return seconds


def parse_interval(text: str) -> int:
    """``MM:SS``, ``HH:MM:SS`` or ``10 minutes`` → seconds (> 0)."""
    text = " ".join(text.strip().lower().split())
    if _INTERVAL_WORDS.match(text):
        return _interval_words(text)
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(_digits(p) for p in parts):
        raise ScheduleError(f"interval {text!r}: expected MM:SS, HH:MM:SS or '10 minutes'")
    numbers = [int(p) for p in parts]
    if any(n >= 60 for n in numbers[1:]):
        raise ScheduleError(f"interval {text!r}: minutes and seconds must be below 60")
    seconds = numbers[-1] + 60 * numbers[-2] + (3600 * numbers[0] if len(numbers) == 3 else 0)
    if seconds <= 0:
        raise ScheduleError(f"interval {text!r} must be longer than zero")
    return _bounded(text, seconds)


def parse_times(text: str) -> list[dt.time]:
    """``HH:MM[:SS][,...]`` → sorted, de-duplicated times of day."""
    times = set()
    for part in text.split(","):
        part = part.strip()
        match = _CLOCK.match(part)
        if not match:
            raise ScheduleError(f"time {part!r}: expected HH:MM or HH:MM:SS")
        hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ScheduleError(f"time {part!r} is not a valid time of day")
        times.add(dt.time(hour, minute, second))
    if not times:
        raise ScheduleError("no times given")
    return sorted(times)


def floor_minute(t: dt.datetime) -> dt.datetime:
    """The UTC minute ``t`` falls in: what one tick stands for."""
    return t.astimezone(dt.UTC).replace(second=0, microsecond=0)
