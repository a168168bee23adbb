"""tickwork's cron maths against an independent implementation: systemd's calendar events.

Each generated cron expression is translated *syntactically* into systemd OnCalendar specs
(``DOW *-MON-DOM HH:MM:SS ZONE``; cron's "either day field" rule becomes the union of two
specs), and ``systemd-analyze calendar --iterations=N`` lists the next instants from the
same start. The two must agree, in UTC and in DST zones (New York, London, Lord Howe's
30-minute shift, Kolkata, Sydney, Santiago), with one documented difference: systemd skips
a local time that a spring-forward gap removes, tickwork fires it once at the gap's end
(docs/SCHEDULES.md). The oracle models that from systemd itself: it asks systemd, on the
wall clock without a zone, whether the expression matches any time inside each gap.

Fast by default (a few seconds); ``--soak`` runs many more examples. A missing
systemd-analyze skips locally and fails with ``CI=true``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import shutil
import subprocess
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import IN_CI
from tickwork.errors import ScheduleError
from tickwork.schedules import parse_schedule

UTC = dt.UTC
ITERATIONS = 12
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Santiago",  # southern too, and its clocks change at midnight
]
_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_ELAPSE = re.compile(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$")


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        message = "systemd-analyze not found (apt-get install systemd)"
        if IN_CI:
            pytest.fail(f"{message}, and CI=true: the cron oracle must run", pytrace=False)
        pytest.skip(message)
    return path


# --- cron -> systemd, field by field (the oracle's own reading of crontab(5)) -------------


def _listed(text: str, lo: int, hi: int, names: list[str] | None = None) -> str:
    """A numeric field as systemd's list, steps and ranges written out per crontab(5).

    systemd's own repetitions (``a/n``) are not used: systemd 252 mis-steps them across a
    boundary (``*-*-1/4`` from 31 December gives 5 January, skipping the 1st; ``*:0/7``
    in New York on its spring-forward day skips 00:00; ``*-1/5-*`` in a zone fails with
    EDEADLK), while its lists are sound.
    """
    if text == "*":
        return "*"
    values: list[int] = []
    for part in text.lower().split(","):
        body, _, step = part.partition("/")
        first, _, last = (f"{lo}-{hi}" if body == "*" else body).partition("-")
        a = names.index(first) + 1 if names and first in names else int(first)
        b = (names.index(last) + 1 if names and last in names else int(last)) if last else None
        values += range(a, (b if b is not None else hi if step else a) + 1, int(step or 1))
    return ",".join(str(v) for v in sorted(set(values)))


def _weekdays(text: str) -> str:
    """Day-of-week items (steps only on *): 0 and 7 are Sunday, ranges listed day by day."""
    days: list[str] = []
    for part in text.lower().split(","):
        if part.startswith("*/"):
            days += [_DAYS[d] for d in range(0, 7, int(part[2:]))]
            continue
        a, _, b = part.partition("-")
        first = _DAYS.index(a.title()) if a.title() in _DAYS else int(a)
        last = (_DAYS.index(b.title()) if b.title() in _DAYS else int(b)) if b else first
        days += [_DAYS[d % 7] for d in range(first, last + 1)]
    return ",".join(dict.fromkeys(days))


def systemd_specs(expr: str, zone: str | None) -> list[str]:
    """The OnCalendar specs whose union is the cron expression (zone None: wall clock)."""
    fields = expr.split()
    second = fields[0] if len(fields) == 6 else "0"
    minute, hour, dom, month, dow = fields[-5:]
    time = f"{_listed(hour, 0, 23)}:{_listed(minute, 0, 59)}:{_listed(second, 0, 59)}"
    mon = _listed(month, 1, 12, _MONTHS)
    day = "~01" if dom.upper() == "L" else "-" + _listed(dom, 1, 31)
    tail = f" {zone}" if zone else ""
    if dom.startswith("*") or dow.startswith("*"):  # cron: a starred day field means AND
        prefix = "" if dow == "*" else _weekdays(dow) + " "
        return [f"{prefix}*-{mon}{day} {time}{tail}"]
    return [f"{_weekdays(dow)} *-{mon}-* {time}{tail}", f"*-{mon}{day} {time}{tail}"]


def systemd_next(
    binary: str, specs: list[str], after: dt.datetime, count: int
) -> list[dt.datetime]:
    """The first ``count`` instants after ``after`` matching any of the specs."""
    out = subprocess.run(
        [
            binary,
            "calendar",
            f"--iterations={count}",
            f"--base-time=@{int(after.timestamp())}",
            *specs,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"TZ": "UTC", "LC_ALL": "C", "SYSTEMD_COLORS": "0"},
        check=False,
    )
    assert out.returncode == 0, (specs, out.stderr)
    found = set()
    for line in out.stdout.splitlines():
        match = _ELAPSE.search(line.strip())
        if match:
            found.add(dt.datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC))
    return sorted(t for t in found if t > after)[:count]


# --- DST gaps -------------------------------------------------------------------------------


@functools.cache
def offset_changes(zone: str) -> tuple[tuple[dt.datetime, dt.timedelta, dt.timedelta], ...]:
    """(instant, offset before, offset after) of each change from 2023 to 2031."""
    tz = ZoneInfo(zone)
    changes = []
    day = dt.datetime(2023, 1, 1, tzinfo=UTC)
    while day.year < 2032:
        nxt = day + dt.timedelta(days=1)
        before, after = day.astimezone(tz).utcoffset(), nxt.astimezone(tz).utcoffset()
        assert before is not None and after is not None
        if after != before:
            lo, hi = day, nxt
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if mid.astimezone(tz).utcoffset() == before else (lo, mid)
            changes.append((hi.replace(microsecond=0), before, after))  # whole seconds
        day = nxt
    return tuple(changes)


def spring_forward_gaps(zone: str) -> list[tuple[dt.datetime, dt.datetime, dt.datetime]]:
    """(instant, wall-clock start, wall-clock end) of each gap."""
    return [
        (at, at.replace(tzinfo=None) + before, at.replace(tzinfo=None) + after)
        for at, before, after in offset_changes(zone)
        if after > before
    ]


def second_passes(zone: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) in UTC of each repeated (fall-back) hour's second pass."""
    return [
        (at, at + before - after) for at, before, after in offset_changes(zone) if after < before
    ]


def expected_fires(binary: str, expr: str, zone: str, start: dt.datetime) -> list[dt.datetime]:
    """systemd's answer under tickwork's DST rule (docs/SCHEDULES.md): a repeated local time
    fires on its first pass only, a time a gap removes fires once at the gap's end.

    systemd agrees on the first point when it walks into a repeat, but fires the second
    pass when asked from inside it: so the oracle asks from the end of that pass.
    """
    base = start
    for pass_start, pass_end in second_passes(zone):
        if pass_start <= start < pass_end:
            base = pass_end - dt.timedelta(seconds=1)
    fires = systemd_next(binary, systemd_specs(expr, zone), base, ITERATIONS)
    repeats = second_passes(zone)
    assert not [t for t in fires for a, b in repeats if a <= t < b], "systemd fired a repeat"
    if not fires or zone == "UTC":
        return fires
    extra = []
    for instant, wall_start, wall_end in spring_forward_gaps(zone):
        if not start < instant <= fires[-1]:
            continue
        probe = wall_start.replace(tzinfo=UTC) - dt.timedelta(seconds=1)
        hit = systemd_next(binary, systemd_specs(expr, None), probe, 1)
        if hit and hit[0] < wall_end.replace(tzinfo=UTC):
            extra.append(instant)
    return sorted(set(fires) | set(extra))[:ITERATIONS]


# --- what to generate: the cron both implementations can express --------------------------


def _items(lo: int, hi: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    def value(v: int) -> str:
        return names[v - 1] if names else str(v)

    def ranged(pair: tuple[int, int]) -> str:
        a, b = sorted(pair)
        return f"{value(a)}-{value(b)}"

    values = st.integers(lo, hi)
    steps = st.integers(1, max(1, (hi - lo) // 2))
    return st.one_of(
        values.map(value),
        st.tuples(values, values).map(ranged),
        steps.map(lambda n: f"*/{n}"),
        st.tuples(st.tuples(values, values).map(ranged), steps).map(lambda p: f"{p[0]}/{p[1]}"),
        st.tuples(values, steps).map(lambda p: f"{p[0]}/{p[1]}"),
    )


def _field_text(lo: int, hi: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    listed = st.lists(_items(lo, hi, names), min_size=1, max_size=3).map(",".join)
    return st.one_of(st.just("*"), listed)


def _weekday_text() -> st.SearchStrategy[str]:
    day = st.one_of(st.integers(0, 7).map(str), st.sampled_from([d.lower() for d in _DAYS]))

    def ranged(pair: tuple[str, str]) -> str:
        def num(text: str) -> int:
            return int(text) if text.isdigit() else _DAYS.index(text.title())

        a, b = sorted(pair, key=num)
        return f"{a}-{b}"

    item = st.one_of(
        day, st.tuples(day, day).map(ranged), st.integers(1, 7).map(lambda n: f"*/{n}")
    )
    return st.one_of(st.just("*"), st.lists(item, min_size=1, max_size=3).map(",".join))


# Hours near the DST changes (01-03) are likelier, so gaps and repeats get exercised.
_HOURS = st.one_of(_field_text(0, 23), st.sampled_from(["1", "2", "2,3", "1-3", "*/2", "0-4"]))
CRONS = st.tuples(
    st.one_of(st.none(), _field_text(0, 59)),
    st.one_of(_field_text(0, 59), st.sampled_from(["0", "30", "*/15", "0,30", "45"])),
    _HOURS,
    st.one_of(_field_text(1, 31), st.just("L")),
    st.one_of(_field_text(1, 12), _field_text(1, 12, _MONTHS)),
    _weekday_text(),
).map(lambda f: " ".join(p for p in f if p is not None))


@st.composite
def starts(draw: st.DrawFn, zone: str) -> dt.datetime:
    """Anywhere in 2025-2028, or within two days before one of the zone's DST changes."""
    gaps = [g[0] for g in spring_forward_gaps(zone) if 2025 <= g[0].year <= 2028]
    if gaps and draw(st.booleans()):
        instant = draw(st.sampled_from(gaps))
        if draw(st.booleans()):  # the fall-back change half a year later
            instant = instant + dt.timedelta(days=draw(st.integers(150, 240)))
        return instant - dt.timedelta(seconds=draw(st.integers(0, 2 * 86_400)))
    moment = draw(st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2028, 12, 31)))
    return moment.replace(microsecond=0, tzinfo=UTC)


def check_against_systemd(binary: str, expr: str, zone: str, start: dt.datetime) -> None:
    try:
        schedule = parse_schedule(expr, zone)
    except ScheduleError as exc:
        # tickwork refuses only what can never fire; systemd must agree.
        assert "never fires" in str(exc), (expr, str(exc))
        assert systemd_next(binary, systemd_specs(expr, zone), start, 1) == [], expr
        return
    try:
        ours = schedule.next_n(start, ITERATIONS)
    except ScheduleError:
        ours = []  # croniter gives up on very rare days (e.g. Feb 29 on a Monday)
    theirs = expected_fires(binary, expr, zone, start)
    if not ours:
        assert len(theirs) < ITERATIONS or theirs[-1].year - start.year > 20, (expr, theirs)
        return
    assert [t.isoformat() for t in ours] == [t.isoformat() for t in theirs], (
        expr,
        zone,
        start.isoformat(),
        systemd_specs(expr, zone),
    )


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "zone", "start"),
    [
        # The cases: a one-day range in day of week is that day, not every day.
        ("0 0 * * 0-0", "UTC", "2026-01-01T00:00:00+00:00"),
        ("0 0 * * 7-7", "UTC", "2026-01-01T00:00:00+00:00"),
        ("0 0 * * Sun-Sun", "UTC", "2026-01-01T00:00:00+00:00"),
        ("0 0 * * 5-7", "UTC", "2026-01-01T00:00:00+00:00"),
        # The day rule: both fields restricted is either; a starred one is both.
        ("0 0 1,15 * 1", "UTC", "2026-01-01T00:00:00+00:00"),
        ("0 0 */2 * 1", "UTC", "2026-01-01T00:00:00+00:00"),
        ("0 0 1 * */1", "UTC", "2026-01-01T00:00:00+00:00"),
        ("0 0 L 2 *", "UTC", "2026-01-01T00:00:00+00:00"),
        # Lists mixing a step and a value.
        ("*/5,7 * * * *", "UTC", "2026-01-01T00:00:00+00:00"),
        ("0 */5,7 * * * *", "UTC", "2026-01-01T00:00:00+00:00"),
        ("0 */2,5 * * *", "Asia/Kolkata", "2026-01-01T00:00:00+00:00"),
        # DST: New York's gap and repeat, Lord Howe's half hours, Sydney's in October.
        ("30 2 * * *", "America/New_York", "2026-03-07T12:00:00+00:00"),
        ("*/20 1 * * *", "America/New_York", "2026-10-31T12:00:00+00:00"),
        ("*/10 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00+00:00"),
        ("*/10 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00:00+00:00"),
        ("15 2 * * *", "Australia/Sydney", "2026-10-03T12:00:00+00:00"),
        ("30 1 * * 0", "Europe/London", "2026-03-28T12:00:00+00:00"),
        ("0 30 1 * * *", "Europe/London", "2026-10-24T12:00:00+00:00"),
    ],
)
def test_known_cases_agree_with_systemd(
    systemd_analyze: str, expr: str, zone: str, start: str
) -> None:
    # Given a cron the issue named (or a DST day), when both list the next fires, they agree.
    check_against_systemd(systemd_analyze, expr, zone, dt.datetime.fromisoformat(start))


def test_property_cron_agrees_with_systemd(
    systemd_analyze: str, request: pytest.FixtureRequest
) -> None:
    """Given any cron both can express, any zone and any start (often just before a DST
    change), when tickwork and systemd list the next fires, then they are the same."""
    soak = bool(request.config.getoption("--soak"))

    @settings(
        max_examples=1500 if soak else 40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=st.data(), expr=CRONS, zone=st.sampled_from(ZONES))
    def check(data: st.DataObject, expr: str, zone: str) -> None:
        start = data.draw(starts(zone), label="start")
        check_against_systemd(systemd_analyze, expr, zone, start)

    check()
