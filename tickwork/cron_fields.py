"""Cron fields parsed by tickwork, not by croniter: what each field means is decided here.

croniter's own reading differs from Vixie cron / cronie and systemd in places
(``0-0`` / ``7-7`` / ``Sun-Sun`` in day of week meant every day; wrap-around ranges with a
step gave odd sets). So tickwork expands every field to an explicit set of values,
validates it with errors that name the bad part, and hands croniter only plain lists
(:meth:`CronFields.croniter_expression`). croniter is still what walks the calendar.

Meaning (see docs/SCHEDULES.md):

- ``*`` and ``?`` (``?`` only in the day fields) are the whole range; day of week is
  0-6 with Sunday as 0 or 7.
- ``a-b`` is a to b inclusive; ``a-b`` with a > b wraps around (``fri-mon`` is Friday,
  Saturday, Sunday, Monday; ``22-2`` in hours is 22, 23, 0, 1, 2).
- ``x/n`` takes every n-th value from the start of x: ``*/n`` from the field's first
  value, ``a-b/n`` from a, and ``a/n`` from a to the field's last value (Saturday in day
  of week). A step on a wrap-around range is refused: write a list instead.
- ``L`` in day of month is the month's last day.
- The day rule is Vixie cron's: if day of month or day of week *begins* with ``*`` or
  ``?`` (``*/2`` counts), a day must match both fields; otherwise either one will do.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickwork.errors import ScheduleError

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# name -> (lowest, highest written value, highest value of '*' and 'a/n')
_BOUNDS = {
    "second": (0, 59, 59),
    "minute": (0, 59, 59),
    "hour": (0, 23, 23),
    "day of month": (1, 31, 31),
    "month": (1, 12, 12),
    "day of week": (0, 7, 6),
}


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²" and "٣"."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True)
class CronFields:
    """A cron expression as explicit sets. Day of week: 0 = Sunday … 6 = Saturday."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]  # days of month named by number (not L)
    last_day: bool  # L: the month's last day
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool  # day of month begins with * or ? (Vixie's DOM_STAR)
    weekdays_star: bool
    has_seconds: bool

    @property
    def day_or(self) -> bool:
        """Cron's rule: both day fields restricted → a day matching either fires."""
        return not (self.days_star or self.weekdays_star)

    @property
    def all_days(self) -> bool:
        return not self.last_day and self.days == frozenset(range(1, 32))

    @property
    def all_weekdays(self) -> bool:
        return self.weekdays == frozenset(range(7))

    @property
    def every_day(self) -> bool:
        """True when the day fields let every day through."""
        if self.day_or:
            return self.all_days or self.all_weekdays
        return self.all_days and self.all_weekdays

    def croniter_expression(self) -> tuple[str, bool]:
        """(croniter's expression with seconds last, day_or) meaning exactly these sets."""
        if self.every_day:
            dom, dow, day_or = "*", "*", True
        else:
            day_or = self.day_or
            dom = "*" if self.all_days and not day_or else _listed(self.days, self.last_day)
            dow = "*" if self.all_weekdays and not day_or else _listed(self.weekdays)
        parts = [
            _listed(self.minutes, full=60),
            _listed(self.hours, full=24),
            dom,
            _listed(self.months, full=12),
            dow,
        ]
        if self.has_seconds:
            parts.append(_listed(self.seconds, full=60))
        return " ".join(parts), day_or


def _listed(values: frozenset[int], last: bool = False, full: int = 0) -> str:
    if full and len(values) == full:
        return "*"
    items = [str(v) for v in sorted(values)] + (["L"] if last else [])
    return ",".join(items)


def parse_fields(original: str, fields: list[str], has_seconds: bool) -> CronFields:
    """Expand ``minute hour dom month dow [second]``; raises ScheduleError naming the part."""
    minute, hour, dom, month, dow = fields[:5]
    seconds = _field(original, "second", fields[5]) if has_seconds else (frozenset({0}), False)
    days, days_star = _field(original, "day of month", dom)
    weekdays, weekdays_star = _field(original, "day of week", dow)
    last_day = 0 in days  # L is carried as 0: no day of month is numbered 0
    return CronFields(
        seconds=seconds[0],
        minutes=_field(original, "minute", minute)[0],
        hours=_field(original, "hour", hour)[0],
        days=days - {0},
        last_day=last_day,
        months=_field(original, "month", month)[0],
        weekdays=frozenset(d % 7 for d in weekdays),  # 7 is Sunday too
        days_star=days_star,
        weekdays_star=weekdays_star,
        has_seconds=has_seconds,
    )


def _field(original: str, name: str, text: str) -> tuple[frozenset[int], bool]:
    """(values, begins with * or ?). L in day of month comes back as 0."""
    lo, hi, open_hi = _BOUNDS[name]
    star = text.startswith(("*", "?"))
    values: set[int] = set()
    for part in text.split(","):  # the original case, so errors quote what was written
        if not part:
            raise ScheduleError(f"cron {original!r}: {name} {text!r} has an empty list item")
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not _digits(step_text) or int(step_text) == 0:
                raise ScheduleError(
                    f"cron {original!r}: {name} step {step_text!r} must be a number ≥ 1"
                )
            step = int(step_text)
            if step > hi - lo + 1:
                raise ScheduleError(
                    f"cron {original!r}: {name} step {step} is larger than the field ({lo}-{hi})"
                )
        if body == "?" and name not in ("day of month", "day of week"):
            raise ScheduleError(f"cron {original!r}: '?' is only allowed in the day fields")
        if body in ("*", "?"):
            values.update(range(lo, open_hi + 1, step))
            continue
        if body.lower() == "l" and name == "day of month":
            if slash:
                raise ScheduleError(f"cron {original!r}: day of month 'L' takes no step")
            values.add(0)
            continue
        first_text, dash, last_text = body.partition("-")
        first = _value(original, name, first_text)
        last = _value(original, name, last_text) if dash else (open_hi if slash else first)
        if slash and not dash and first > open_hi:
            last = first  # e.g. "7/2" in day of week: Sunday, then nothing
        if first <= last:
            values.update(range(first, last + 1, step))
        elif slash:
            raise ScheduleError(
                f"cron {original!r}: {name} {part!r} is a wrap-around range with a step; "
                "write the values as a list instead"
            )
        else:
            values.update(range(first, hi + 1))
            values.update(range(lo, last + 1))
    return frozenset(values), star


def _value(original: str, name: str, text: str) -> int:
    names = MONTH_NAMES if name == "month" else DAY_NAMES if name == "day of week" else ()
    if text.lower() in names:
        return names.index(text.lower()) + (1 if name == "month" else 0)
    if not _digits(text):
        raise ScheduleError(f"cron {original!r}: {name} {text!r} is not a number")
    lo, hi, _open_hi = _BOUNDS[name]
    value = int(text)
    if not lo <= value <= hi:
        raise ScheduleError(f"cron {original!r}: {name} {value} is out of range {lo}-{hi}")
    return value
