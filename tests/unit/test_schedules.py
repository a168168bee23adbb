"""Schedule maths on a fake clock: forms, words, DST, and properties."""

import datetime as dt
import itertools
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tickwork.errors import ScheduleError
from tickwork.schedules import Schedule, parse_interval, parse_schedule

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 24, 10, 7, 13, tzinfo=UTC)


def fires(expr: str, start: dt.datetime, count: int, tz: str = "UTC") -> list[str]:
    schedule = parse_schedule(expr, tz)
    return [t.astimezone(schedule.tz).isoformat() for t in schedule.next_n(start, count)]


@pytest.mark.parametrize(
    ("expr", "words", "first"),
    [
        ("0 30 * * * *", "hourly at :30", "2026-11-24T10:30:00+00:00"),  # Barycenter, seconds first
        ("0 0 * * * *", "hourly at :00", "2026-11-24T11:00:00+00:00"),
        ("0 */5 * * * *", "every 5 minutes", "2026-11-24T10:10:00+00:00"),
        ("0 45 * * * *", "hourly at :45", "2026-11-24T10:45:00+00:00"),
        ("15 * * * * *", "every minute at second 15", "2026-11-24T10:07:15+00:00"),
        ("*/5 * * * *", "every 5 minutes", "2026-11-24T10:10:00+00:00"),
        ("@hourly", "hourly at :00", "2026-11-24T11:00:00+00:00"),
        ("@daily", "daily at 00:00", "2026-11-25T00:00:00+00:00"),
        ("10 minutes", "every 10 minutes", "2026-11-24T10:10:00+00:00"),
        ("2 hours", "every 2 hours", "2026-11-24T12:00:00+00:00"),
        ("1 day", "every 1 day", "2026-11-25T00:00:00+00:00"),
        ("every 05:00", "every 5 minutes", "2026-11-24T10:10:00+00:00"),
        ("every 01:30:00", "every 90 minutes", "2026-11-24T10:30:00+00:00"),
        ("02:30,14:00:05", "daily at 02:30 and 14:00:05", "2026-11-24T14:00:05+00:00"),
    ],
)
def test_forms_words_and_first_fire(expr: str, words: str, first: str) -> None:
    schedule = parse_schedule(expr)
    assert schedule.words() == words
    assert schedule.next_after(T0).isoformat() == first


def test_six_field_cron_puts_seconds_first() -> None:
    # Given Barycenter's "0 30 * * * *", then it is hourly at :30:00, not every second of :30.
    assert fires("0 30 * * * *", T0, 2) == [
        "2026-11-24T10:30:00+00:00",
        "2026-11-24T11:30:00+00:00",
    ]
    assert fires("30 0 * * * *", T0, 1) == ["2026-11-24T11:00:30+00:00"]


@pytest.mark.parametrize("sunday", ["0 3 * * 0", "0 3 * * 7", "0 3 * * sun", "@weekly"])
def test_sunday_is_0_or_7(sunday: str) -> None:
    fired = parse_schedule(sunday).next_after(T0)
    assert fired.weekday() == 6  # Sunday


@pytest.mark.parametrize("expr", ["30 2 * * *", "02:30", "0 30 2 * * *"])
def test_daily_0230_runs_once_on_spring_forward_day(expr: str) -> None:
    # Europe/Paris skips 02:00-03:00 on 2026-03-29.
    schedule = parse_schedule(expr, "Europe/Paris")
    start = dt.datetime(2026, 3, 28, 12, tzinfo=UTC)
    got = list(schedule.fires_between(start, start + dt.timedelta(days=2)))
    days = [t.astimezone(schedule.tz).date().isoformat() for t in got]
    assert days == ["2026-03-29", "2026-03-30"]


@pytest.mark.parametrize("expr", ["30 2 * * *", "02:30", "0 30 2 * * *"])
def test_daily_0230_runs_once_on_fall_back_day(expr: str) -> None:
    # Europe/Paris passes 02:30 twice on 2026-10-25.
    schedule = parse_schedule(expr, "Europe/Paris")
    start = dt.datetime(2026, 10, 24, 12, tzinfo=UTC)
    got = list(schedule.fires_between(start, start + dt.timedelta(days=2)))
    assert [t.astimezone(schedule.tz).isoformat() for t in got] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("* 24 * * *", "hour 24 is out of range 0-23"),
        ("* * 0 * *", "day of month 0 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * * 8", "day of week 8 is out of range 0-7"),
        ("*/0 * * * *", "minute step '0'"),
        ("70 * * * * *", "second 70 is out of range"),
        ("* * *", "has 3 fields"),
        ("25:00", "not a valid time of day"),
        ("10 fortnights", "unknown unit 'fortnights'"),
        ("0 minutes", "longer than zero"),
        ("@sometimes", "unknown shortcut"),
        ("", "empty schedule"),
        ("every banana", "cannot understand schedule"),
        ("0 0 31 2 *", "never fires: day of month [31] does not occur in month [2]"),
    ],
)
def test_invalid_expressions_name_the_bad_part(expr: str, fragment: str) -> None:
    with pytest.raises(
        ScheduleError,
        match=re.escape(fragment),
    ):
        parse_schedule(expr)


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        parse_schedule("@daily", "Mars/Olympus")


def test_probable_mistakes_warn() -> None:
    assert "1440 times a day" in parse_schedule("* * 1 * *").warnings()[0]
    assert parse_schedule("0 0 1 * *").warnings() == []


def test_interval_override_formats() -> None:
    assert parse_interval("05:00") == 300
    assert parse_interval("01:00:00") == 3600
    assert parse_interval("10 minutes") == 600
    with pytest.raises(ScheduleError):
        parse_interval("5:61")


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
EXPRESSIONS = [
    "30 2 * * *",
    "*/7 * * * *",
    "0 30 * * * *",
    "02:30,23:59:59",
    "17 minutes",
    "0 0 * * 0",
    "15 1-3 * * *",
    "@hourly",
]


@settings(max_examples=150, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS),
    tz=st.sampled_from(ZONES),
    start=st.datetimes(
        min_value=dt.datetime(2024, 1, 1),
        max_value=dt.datetime(2030, 12, 31),
        timezones=st.just(UTC),
    ),
)
def test_fire_times_strictly_increase_and_skip_nothing(
    expr: str, tz: str, start: dt.datetime
) -> None:
    # Given any schedule, zone and start, when we walk 40 fires, then they strictly increase,
    # and no local wall-clock slot fires twice.
    schedule = parse_schedule(expr, tz)
    fired = schedule.next_n(start, 40)
    assert all(a < b for a, b in itertools.pairwise(fired))
    assert fired[0] > start
    local = [t.astimezone(ZoneInfo(tz)).replace(tzinfo=None) for t in fired]
    assert len(set(local)) == len(local)
    # fires_between over the same span yields exactly the same slots (none skipped).
    assert list(schedule.fires_between(start, fired[-1])) == fired


_CRON_PART = {
    "minute": st.sampled_from(["*", "0", "30", "*/5", "*/15", "0,30", "10-20", "59"]),
    "hour": st.sampled_from(["*", "0", "2", "3", "*/6", "1-5", "23", "8,17"]),
    "dom": st.sampled_from(["*", "1", "15", "1,15", "*/10", "31", "28-31", "L", "*/2", "?"]),
    "month": st.sampled_from(["*", "1", "3", "10", "3,10", "*/2", "jan", "nov"]),
    "dow": st.sampled_from(["*", "0", "7", "1-5", "sat,sun", "mon", "5", "0-0", "fri-mon", "*/2"]),
    "second": st.sampled_from([None, "0", "30", "*/20", "0,45", "*"]),
}


@settings(max_examples=300, deadline=None)
@given(
    minute=_CRON_PART["minute"],
    hour=_CRON_PART["hour"],
    dom=_CRON_PART["dom"],
    month=_CRON_PART["month"],
    dow=_CRON_PART["dow"],
    second=_CRON_PART["second"],
    tz=st.sampled_from(
        ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
    ),
    start=st.datetimes(
        min_value=dt.datetime(2025, 1, 1),
        max_value=dt.datetime(2027, 12, 31),
        timezones=st.just(dt.UTC),
    ),
)
def test_fast_minute_match_agrees_with_croniter_walk(
    minute: str,
    hour: str,
    dom: str,
    month: str,
    dow: str,
    second: str | None,
    tz: str,
    start: dt.datetime,
) -> None:
    """Given any cron and any dispatcher-sized window (incl. DST days, seconds-first crons),
    when the minute-matching fast path answers, then it is exactly croniter's answer."""
    expr = " ".join(([second] if second else []) + [minute, hour, dom, month, dow])
    try:
        schedule = parse_schedule(expr, tz)
    except ScheduleError as exc:
        assert "never fires" in str(exc)  # e.g. the 31st of November
        return
    begin = start.replace(second=0, microsecond=0) - dt.timedelta(seconds=1)
    for window in (dt.timedelta(seconds=60), dt.timedelta(seconds=90)):
        end = begin + window
        fast = list(schedule.fires_between(begin, end))
        walk = list(Schedule.fires_between(schedule, begin, end))
        assert fast == walk, (expr, tz, begin)


@pytest.mark.parametrize(
    ("expr", "tz", "minute_utc", "expected"),
    [
        # Given a daily 02:30 Paris job on the spring-forward day (02:00-03:00 does not exist)
        # when the dispatcher asks about the minute after the gap, the slot is still found.
        ("30 2 * * *", "Europe/Paris", "2026-03-29T01:00:00+00:00", None),
        ("0 30 * * * *", "UTC", "2026-11-24T08:30:00+00:00", "2026-11-24T08:30:00+00:00"),
        ("*/15 * * * *", "Asia/Kolkata", "2026-11-24T08:45:00+00:00", "2026-11-24T08:45:00+00:00"),
    ],
)
def test_dispatcher_minute_windows(
    expr: str, tz: str, minute_utc: str, expected: str | None
) -> None:
    schedule = parse_schedule(expr, tz)
    minute = dt.datetime.fromisoformat(minute_utc)
    got = list(
        schedule.fires_between(minute - dt.timedelta(seconds=1), minute + dt.timedelta(seconds=59))
    )
    walk = list(
        Schedule.fires_between(
            schedule, minute - dt.timedelta(seconds=1), minute + dt.timedelta(seconds=59)
        )
    )
    assert got == walk
    if expected is not None:
        assert got == [dt.datetime.fromisoformat(expected)]


# --- issue 19: cron that agrees with cron, and one voice for words ------------------------


@pytest.mark.parametrize("dow", ["0-0", "7-7", "Sun-Sun", "sun-SUN", "0", "7", "0,7", "7-7/1"])
def test_one_day_ranges_in_day_of_week_are_that_day(dow: str) -> None:
    # Given "Sunday through Sunday", when it fires for three weeks, then only on Sundays
    # (croniter alone fired every day; cronie and systemd fire on Sundays).
    schedule = parse_schedule(f"0 0 * * {dow}")
    got = schedule.next_n(T0, 3)
    assert [t.strftime("%a %d") for t in got] == ["Sun 29", "Sun 06", "Sun 13"]
    assert schedule.words() == "at 00:00 on Sunday"


@pytest.mark.parametrize(
    ("expr", "words", "first_three"),
    [
        ("*/5,7 * * * *", "hourly at :00, :05, :07, :10, :15, :20, :25, :30, :35, :40, :45, :50 "
         "and :55", ["10:10:00", "10:15:00", "10:20:00"]),
        ("0 */2,5 * * *", "daily at 00:00, 02:00, 04:00, 05:00, 06:00, 08:00, 10:00, 12:00, "
         "14:00, 16:00, 18:00, 20:00 and 22:00", ["12:00:00", "14:00:00", "16:00:00"]),
        ("0 */5,7 * * * *", "hourly at :00, :05, :07, :10, :15, :20, :25, :30, :35, :40, :45, "
         ":50 and :55", ["10:10:00", "10:15:00", "10:20:00"]),
    ],
)  # fmt: skip
def test_lists_mixing_a_step_and_a_value(expr: str, words: str, first_three: list[str]) -> None:
    # Given a list with a step and a value, then words say every value, and it fires on them.
    schedule = parse_schedule(expr)
    assert schedule.words() == words
    assert [t.strftime("%H:%M:%S") for t in schedule.next_n(T0, 3)] == first_three


@pytest.mark.parametrize(
    ("expr", "tz", "words"),
    [
        # 30 is a second here (seconds come first), and the words say so.
        ("30 */5 * * * *", "UTC", "every 5 minutes at :00:30, :05:30, ..., :55:30"),
        # */2 in day of month is the odd days, restarting each month: not "every 2 days".
        ("0 0 */2 * *", "UTC", "at 00:00 on days 1, 3, ..., 31 of the month"),
        # 24-hour clock, lower case, the zone named.
        ("0 0 29 2 *", "Europe/Paris", "at 00:00 on day 29 of the month in February "
         "(Europe/Paris)"),
        ("30 2 * * *", "America/New_York", "daily at 02:30 (America/New_York)"),
        ("02:30", "America/New_York", "daily at 02:30 (America/New_York)"),
        ("*/7 * * * *", "UTC", "hourly at :00, :07, ..., :56"),
        ("0 9-17 * * mon-fri", "UTC", "at 09:00, 10:00, ..., 17:00 on Monday to Friday"),
        ("0 0 * * fri-mon", "UTC", "at 00:00 on Monday and Friday to Sunday"),
        ("0 0 1,15 * 1", "UTC", "at 00:00 on days 1 and 15 of the month or on Monday"),
        ("0 0 */2 * 1", "UTC", "at 00:00 on days 1, 3, ..., 31 of the month when that is a "
         "Monday"),
        ("0 0 L * *", "UTC", "at 00:00 on the last day of the month"),
        ("0 12 * 6-8 *", "UTC", "daily at 12:00 in June to August"),
        ("15 */6 * * *", "Asia/Kolkata", "daily at 00:15, 06:15, 12:15 and 18:15 (Asia/Kolkata)"),
        ("30 */2 * * *", "UTC", "every 2 hours at :30"),
        ("*/15 9-17 * * *", "UTC", "every 15 minutes, in hours 9, 10, ..., 17"),
        ("* * * * * *", "UTC", "every second"),
        ("10 minutes", "Asia/Kolkata", "every 10 minutes"),  # an interval has no zone
    ],
)  # fmt: skip
def test_words_are_one_voice(expr: str, tz: str, words: str) -> None:
    assert parse_schedule(expr, tz).words() == words


def test_every_day_of_week_in_either_rule_is_every_day() -> None:
    # Given day 1 OR any weekday (both fields restricted: cron's "either" rule), it is daily.
    schedule = parse_schedule("0 0 1 * 0-6")
    assert schedule.words() == "daily at 00:00"
    assert [t.day for t in schedule.next_n(T0, 3)] == [25, 26, 27]


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("0 0 * * thu-tue/2", "day of week 'thu-tue/2' is a wrap-around range with a step"),
        ("0 0 1 apr-mar/2 *", "month 'apr-mar/2' is a wrap-around range with a step"),
        ("0 0 L/2 * *", "day of month 'L' takes no step"),
        ("1,,2 * * * *", "minute '1,,2' has an empty list item"),
        ("? * * * *", "'?' is only allowed in the day fields"),
        ("*/61 * * * *", "minute step 61 is larger than the field (0-59)"),
        ("0 0 * * mon-xyz", "day of week 'xyz' is not a number"),
        ("0 0 31 4,6 *", "never fires"),
    ],
)
def test_refused_crons_say_why(expr: str, fragment: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(fragment)):
        parse_schedule(expr)


@pytest.mark.parametrize(
    ("expr", "days"),
    [
        ("0 0 * * fri-mon", ["Fri", "Sat", "Sun", "Mon", "Fri"]),
        ("0 22-1 * * *", None),  # hours 22, 23, 0, 1
    ],
)
def test_wrap_around_ranges_without_a_step_wrap(expr: str, days: list[str] | None) -> None:
    got = parse_schedule(expr).next_n(T0, 5)
    if days is not None:
        assert [t.strftime("%a") for t in got] == days
    else:
        assert [t.hour for t in got] == [22, 23, 0, 1, 22]


@pytest.mark.parametrize(
    ("tz", "start", "times", "cron", "expected"),
    [
        # New York skips 02:00-03:00 on 2026-03-08: 02:30 fires at 03:00, both forms.
        ("America/New_York", "2026-03-07T12:00:00+00:00", "02:30", "30 2 * * *",
         "2026-03-08T03:00:00-04:00"),
        # Lord Howe skips 02:00-02:30 on 2026-10-04 (a 30-minute shift).
        ("Australia/Lord_Howe", "2026-10-03T12:00:00+00:00", "02:15", "15 2 * * *",
         "2026-10-04T02:30:00+11:00"),
        # Sydney skips 02:00-03:00 on 2026-10-04.
        ("Australia/Sydney", "2026-10-03T12:00:00+00:00", "02:59:59", "59 59 2 * * *",
         "2026-10-04T03:00:00+11:00"),
    ],
)  # fmt: skip
def test_daily_times_and_cron_share_the_spring_forward_rule(
    tz: str, start: str, times: str, cron: str, expected: str
) -> None:
    begin = dt.datetime.fromisoformat(start)
    for expr in (times, cron):
        schedule = parse_schedule(expr, tz)
        assert schedule.next_after(begin).astimezone(schedule.tz).isoformat() == expected, expr


def test_wildcard_hour_slot_in_a_gap_fires_once_at_the_gap_end() -> None:
    # Given hourly at :01 in New York, the 02:01 slot that 2026-03-08 lacks fires at 03:00.
    schedule = parse_schedule("1 * * * *", "America/New_York")
    begin = dt.datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST
    got = [t.astimezone(schedule.tz).strftime("%H:%M") for t in schedule.next_n(begin, 3)]
    assert got == ["03:00", "03:01", "04:01"]


_FIELD_TEXT = st.lists(
    st.sampled_from([*"0123456789*/,-?LW#", "mon", "sun", "jan", "dec", "7", "60"]),
    min_size=1,
    max_size=8,
).map("".join)


_VALUE = st.one_of(
    st.integers(1, 7).map(str),
    st.integers(0, 61).map(str),
    st.sampled_from(["mon", "sun", "sat", "jan", "dec", "L", "?"]),
)
_ITEM = st.one_of(
    st.just("*"),
    _VALUE,
    st.tuples(_VALUE, _VALUE).map("-".join),
    st.tuples(st.sampled_from(["*", "1", "5-2", "mon-fri", "fri-mon"]), st.integers(0, 40)).map(
        lambda p: f"{p[0]}/{p[1]}"
    ),
)
_STRUCTURED = st.lists(_ITEM, min_size=1, max_size=3).map(",".join)


@settings(max_examples=400, deadline=None)
@given(
    fields=st.lists(
        st.one_of(st.just("*"), st.just("*"), _STRUCTURED, _STRUCTURED, _FIELD_TEXT),
        min_size=5,
        max_size=6,
    ),
    tz=st.sampled_from(["UTC", "America/New_York", "Australia/Lord_Howe"]),
)
def test_any_cron_is_accepted_with_words_or_refused_clearly(fields: list[str], tz: str) -> None:
    """Given any cron-looking text, then parsing either refuses it with a ScheduleError that
    names the expression, or accepts it and then words and the next fire never raise."""
    expr = " ".join(fields)
    try:
        schedule = parse_schedule(expr, tz)
    except ScheduleError as exc:
        event("refused")
        assert expr in str(exc) or "cannot understand" in str(exc)
        return
    event("accepted")
    words = schedule.words()
    assert words and words == words.strip()
    try:
        schedule.next_after(T0)
    except ScheduleError as exc:
        assert "never fires" in str(exc)


def test_an_interval_override_reads_the_same_in_both_columns() -> None:
    # Given an operator's 300-second interval override, when the job list shows its
    # schedule and its words, then both say "every 5 minutes" (not "every 300 seconds").
    from schema.scheduling import ScheduledJobConfig
    from workers.registry import JobSpec
    from workers.scheduler.effective import effective_schedule

    spec = JobSpec(name="h19a_probe", fn=lambda *a, **k: None, description="probe")
    config = ScheduledJobConfig(
        job_name="h19a_probe", enabled=True, notify_on_success=False, override_interval_s=300
    )
    schedule = effective_schedule(spec, config).schedule
    assert schedule is not None
    assert schedule.expression == schedule.words() == "every 5 minutes"


def test_the_machine_time_zone_does_not_move_fire_times(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the walk on naive wall-clock times, when the process runs in another zone
    # (TZ set, as on a host that is not UTC), then the fire times are the same.
    import time

    start = dt.datetime(2026, 3, 7, 12, tzinfo=UTC)
    expected = parse_schedule("*/20 2 * * *", "Europe/Paris").next_n(start, 6)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        from tickwork.schedules import CronSchedule

        fresh = parse_schedule("*/20 2 * * *", "Europe/Paris")
        assert isinstance(fresh, CronSchedule)
        got = [fresh._next_after(t) for t in [start, *expected[:-1]]]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert got == expected
