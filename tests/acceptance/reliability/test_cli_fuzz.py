"""CLI input fuzzed: clear errors, nothing changed.

Hypothesis feeds hostile values to every `tickwork` command that takes user input
(job names, schedule times and intervals, schedule expressions, time zones, dates,
token names and ids, counts, limits, probe durations, the global --log-level, stray
arguments). Each input is run in-process (typer's CliRunner) against a migrated SQLite
database, and must end in one of two ways: success (exit 0), or a clear error, that is
no traceback, a non-zero exit, a message naming the flag, argument, job or value that
was wrong, and every table's rows exactly as they were before. Where validity is easy
to decide independently (job names, daily times, intervals, token names) the exit code
must agree with that oracle.

The figures row counts, in its "lost" column, the inputs that failed but changed the
database anyway; it must be 0.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from typer.testing import CliRunner, Result

from admin.cli import api_tokens as api_tokens_cli
from admin.cli import common
from admin.cli import jobs as jobs_cli
from admin.cli.main import app
from schema import Base
from schema.engine import Database
from tests.acceptance.reliability.conftest import Figures, record
from tests.conftest import FERNET_KEY, make_settings
from workers.app import import_job_modules
from workers.registry import all_jobs

# --- the system under test ------------------------------------------------------------


@dataclass
class Tally:
    iterations: int = 0
    changed_on_failure: int = 0


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    yield
    record(
        Figures(
            "CLI input fuzzed",
            TALLY.iterations,
            lost=TALLY.changed_on_failure,
            duplicated=0,
            stuck=0,
            max_recovery_s=0.0,
        )
    )


@dataclass
class Cli:
    runner: CliRunner
    env: dict[str, str]
    db: Database
    jobs: list[str] = field(default_factory=list)

    def invoke(self, args: list[str]) -> Result:
        common._overrides.clear()  # global flags of one invocation must not leak
        return self.runner.invoke(app, args, env=self.env)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        rows: dict[str, list[tuple[Any, ...]]] = {}
        with self.db.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                rows[table.name] = sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
        return rows


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    env = {
        "TICKWORK_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "TICKWORK_DATA_DIR": str(tmp_path / "data"),
        "TICKWORK_FERNET_KEY": FERNET_KEY,
        "TICKWORK_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
        "COLUMNS": "2000",  # typer's error box: one message, one line
    }
    monkeypatch.setattr(common, "_overrides", {})
    config = make_settings(tmp_path, **{k: v for k, v in env.items() if k.startswith("TICKWORK")})
    import_job_modules(config)
    db = Database(config)
    # One engine for every invocation (the CLI opens one per command otherwise).
    monkeypatch.setattr(jobs_cli, "_db", lambda: db)
    monkeypatch.setattr(api_tokens_cli, "_db", lambda: db)
    c = Cli(CliRunner(), env, db, sorted(all_jobs()))
    # As if `tickwork run` were running: the CLI only records runs for it to send.
    (tmp_path / "heartbeat").touch()
    migrated = c.invoke(["migrate"])
    assert migrated.exit_code == 0, migrated.output
    # Some rows, so that a stray write or delete has something to change.
    for seed in (
        ["api-token", "create", "seed token"],
        ["jobs", "set-schedule", "heartbeat", "--times", "01:00,13:30"],
        ["jobs", "disable", "prune_run_history"],
        ["jobs", "trigger", "heartbeat"],
    ):
        seeded = c.invoke(seed)
        assert seeded.exit_code == 0, (seed, seeded.output)
    yield c
    db.dispose()


def _runs(soak: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=500 if soak else 50,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- what a good answer looks like ------------------------------------------------------

_BOX = re.compile(r"[╭╮╰╯│─]")


def _flat(text: str) -> str:
    return " ".join(_BOX.sub(" ", text).split())


def check(
    cli: Cli,
    args: list[str],
    *,
    valid: bool | None,
    names: list[str],
) -> Result:
    """Run one input; assert a clean outcome. ``valid``: the oracle (None: unknown).
    ``names``: what an error may name (flag, argument, job or value) to be clear."""
    TALLY.iterations += 1
    before = cli.snapshot()
    result = cli.invoke(args)
    after = cli.snapshot()
    shown = f"args={args!r} exit={result.exit_code}\n" + re.sub("─{3,}", "─", result.output)
    # no traceback: a clean exit or SystemExit, never an escaped exception
    assert "Traceback" not in result.output, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}\n{result.exception!r}"
    )
    if valid is True:
        assert result.exit_code == 0, shown
    if valid is False:
        assert result.exit_code != 0, shown
    if result.exit_code == 0:
        return result
    # a failure changed nothing
    if after != before:
        TALLY.changed_on_failure += 1
    assert after == before, f"{shown}\ndatabase changed although the command failed"
    # one clear error
    stderr = result.stderr.strip()
    if stderr.startswith("Usage:"):  # click's usage errors: usage, hint, one boxed line
        message = [line for line in stderr.splitlines() if line.startswith("│")]
        assert len(message) == 1, shown
    else:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), shown
        message = lines
    flat = _flat(message[0])
    # as given, as a Python repr, or escaped without quotes (click shows '-\x1b' so)
    shown_as = [*names, *(repr(n) for n in names), *(repr(n)[1:-1] for n in names)]
    wanted = [_flat(n) for n in shown_as]
    # click reads "-xyz" as the short options -x -y -z and names the first unknown one
    option = re.search(r"No such option: (-\S+)", flat)
    named = option is not None and any(
        n.startswith(option.group(1)) or (n.startswith("-") and option.group(1)[1:] in n)
        for n in shown_as
    )
    assert named or any(w and w in flat for w in wanted), f"{shown}\nnames none of {names!r}"
    return result


# --- hostile values --------------------------------------------------------------------

# What a shell can pass: any text but NUL (and no lone surrogates).
_any_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
)
_digits_text = st.text(st.sampled_from("0123456789:, -²٣１" + "\t\n"), max_size=20)


def _job_names(jobs: list[str]) -> st.SearchStrategy[str]:
    known = st.sampled_from(jobs)
    return st.one_of(
        known,
        known.map(str.upper),
        known.map(lambda n: n + " "),
        known.map(lambda n: n[:-1]),
        known.map(lambda n: "-" + n),
        _any_text,
    )


def _time_valid(text: str) -> bool:
    """Independent oracle: HH:MM[:SS][,...], 0-23 / 0-59 / 0-59, surrounding spaces ok."""
    for part in text.split(","):
        m = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?", part.strip())
        if m is None:
            return False
        h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if h > 23 or mi > 59 or s > 59:
            return False
    return True


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _interval_seconds(text: str) -> int | None:
    """Independent oracle for the simple forms: seconds, or None if clearly invalid."""
    t = " ".join(text.strip().lower().split())
    m = re.fullmatch(r"(?:every )?([0-9]+) ?(second|minute|hour|day)s?", t)
    if m:
        return int(m.group(1)) * _UNITS[m.group(2)]
    m = re.fullmatch(r"([0-9]+):([0-9]+)(?::([0-9]+))?", t)
    if m:
        parts = [int(p) for p in m.groups() if p is not None]
        if any(p >= 60 for p in parts[1:]):
            return None
        return parts[-1] + 60 * parts[-2] + (3600 * parts[0] if len(parts) == 3 else 0)
    return None


_interval_text = st.one_of(
    _digits_text,
    st.builds(
        lambda n, unit, every: f"{'every ' if every else ''}{n} {unit}",
        st.one_of(st.integers(0, 10_000), st.integers(0, 10**30)),
        st.sampled_from(["seconds", "minutes", "hours", "days", "minute", "weeks", "fortnights"]),
        st.booleans(),
    ),
    st.builds(
        lambda a, b: f"{a}:{b}", st.integers(0, 10**25), st.integers(0, 99).map("{:02d}".format)
    ),
    _any_text,
)


# --- the tests -------------------------------------------------------------------------


def test_job_name_commands_refuse_unknown_jobs_by_name(cli: Cli, soak: bool) -> None:
    # given: a migrated database with a token, an override, a disabled job and a run
    @_runs(soak)
    @given(
        command=st.sampled_from(
            [
                ["jobs", "enable"],
                ["jobs", "disable"],
                ["jobs", "trigger"],
                ["jobs", "history"],
                ["jobs", "set-schedule", "--clear"],
                ["jobs", "notify-on-success", "on"],
            ]
        ),
        name=_job_names(cli.jobs),
    )
    def run(command: list[str], name: str) -> None:
        # when: a job command names an arbitrary job
        args = [*command[:2], name, *command[2:]]
        # then: a registered name works; anything else is refused naming the job, with
        # nothing changed (a name that looks like a flag is a usage error naming it)
        valid = None if name.startswith("-") else name in cli.jobs
        check(cli, args, valid=valid, names=[name, "NAME", "name"])

    run()


def test_set_schedule_times_and_intervals(cli: Cli, soak: bool) -> None:
    # given: the seeded database
    @_runs(soak)
    @given(
        job=st.sampled_from(cli.jobs),
        times=st.none() | _digits_text | _any_text,
        interval=st.none() | _interval_text,
        clear=st.booleans(),
    )
    def run(job: str, times: str | None, interval: str | None, clear: bool) -> None:
        args = ["jobs", "set-schedule", job]
        args += ["--times", times] if times is not None else []
        args += ["--interval", interval] if interval is not None else []
        args += ["--clear"] if clear else []
        # when: an override is set with arbitrary times / interval / --clear
        # then: the oracle decides the simple cases; a refusal names the flag or value
        valid: bool | None = None
        both = bool(times and interval)
        if (clear and (times or interval)) or (not clear and not times and not interval) or both:
            valid = False
        elif times and not interval and not clear:
            valid = _time_valid(times) if times.isascii() else None
        elif interval and not times and not clear:
            seconds = _interval_seconds(interval) if interval.isascii() else None
            if seconds is not None:
                valid = 0 < seconds <= 3650 * 86_400  # the documented maximum: 3650 days
        check(
            cli,
            args,
            valid=valid,
            names=[
                *(["--times", "time", times] if times is not None else []),
                *(["--interval", "interval", interval] if interval is not None else []),
                "--clear",
            ],
        )

    run()


def test_schedule_explain_expressions_zones_dates_counts(cli: Cli, soak: bool) -> None:
    # given: `schedule explain`, which only reads
    expressions = st.one_of(
        st.sampled_from(["*/5 * * * *", "0 3 * * 1-5", "every 10 minutes", "02:30,14:00"]),
        st.builds(
            lambda fields: " ".join(fields),
            st.lists(
                st.sampled_from(["*", "*/0", "*/²", "61", "1-", "L", "?", "²"]),
                min_size=5,
                max_size=6,
            ),
        ),
        st.builds(lambda n: f"every {n} days", st.integers(0, 10**30)),
        _interval_text,
        _any_text,
    )

    @_runs(soak)
    @given(
        expression=expressions,
        tz=st.none() | st.sampled_from(["UTC", "Europe/Paris", "Nowhere/X", "../etc"]) | _any_text,
        start=st.none()
        | st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)).map(
            dt.datetime.isoformat
        )
        | _any_text,
        count=st.none() | st.integers(-5, 2000).map(str) | _any_text,
        fmt=st.none() | st.sampled_from(["text", "json", "xml"]),
    )
    def run(
        expression: str, tz: str | None, start: str | None, count: str | None, fmt: str | None
    ) -> None:
        args = ["schedule", "explain", "--", expression]
        options: list[str] = []
        options += ["--tz", tz] if tz is not None else []
        options += ["--from", start] if start is not None else []
        options += ["--count", count] if count is not None else []
        options += ["--format", fmt] if fmt is not None else []
        # when: explained; then: words and fire times, or one error naming what was wrong
        check(
            cli,
            ["schedule", "explain", *options, *args[2:]],
            valid=None,
            names=[
                expression,
                "schedule",
                "cron",
                "interval",
                "time",
                *([tz, "--tz", "time zone"] if tz is not None else []),
                *([start, "--from"] if start is not None else []),
                *([count, "--count"] if count is not None else []),
                *([fmt, "--format"] if fmt is not None else []),
            ],
        )

    run()


def test_api_token_names_and_ids(cli: Cli, soak: bool) -> None:
    # given: one seeded token (id 1)
    @_runs(soak)
    @given(
        create=st.booleans(),
        name=_any_text | st.text(max_size=300).filter(lambda v: "\x00" not in v),
        token_id=st.one_of(
            st.integers(-(2**70), 2**70).map(str),
            st.sampled_from(["0", "1", "2", "1.5", "0x1", "1e3", "", " 1"]),
            _any_text,
        ),
    )
    def run(create: bool, name: str, token_id: str) -> None:
        if create:
            # when: a token is created with an arbitrary name
            # then: 1-255 characters after trimming work; others are refused by name
            ok = 1 <= len(name.strip()) <= 255 and not name.startswith("-")
            valid = ok if not name.startswith("-") else None
            check(cli, ["api-token", "create", name], valid=valid, names=["token name", name])
        else:
            # when: an arbitrary id is revoked
            # then: an unknown or malformed id is refused, naming it
            check(
                cli,
                ["api-token", "revoke", token_id],
                valid=None,
                names=[token_id, "TOKEN_ID", "token_id"],
            )

    run()


def test_numbers_durations_and_global_flags(cli: Cli, soak: bool) -> None:
    # given: the commands whose flags are numbers or choices
    numbers = st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
        st.sampled_from(["nan", "inf", "-inf", "1e400", "0", "0.05", "1_000", " 5"]),
        _any_text,
    )

    @_runs(soak)
    @given(
        case=st.sampled_from(
            [
                (["jobs", "history", "heartbeat", "--limit"], "--limit"),
                (["probe", "liveness", "--max-age-s"], "--max-age-s"),
                (["probe", "readiness", "--timeout-s"], "--timeout-s"),
                (["worker", "--processes"], "--processes"),
                (["worker", "--threads"], "--threads"),
                (["worker", "--queues"], "--queues"),
                (["jobs", "--format"], "--format"),
                (["jobs", "notify-on-success", "heartbeat"], "VALUE"),
                (["--log-level"], "TICKWORK_LOG_LEVEL"),
            ]
        ),
        value=numbers,
    )
    def run(case: tuple[list[str], str], value: str) -> None:
        prefix, flag = case
        args = [*prefix, value] + (["jobs"] if prefix == ["--log-level"] else [])
        # when: run with an arbitrary value; then: a clear refusal naming the flag or
        # value (liveness without a heartbeat, worker without RabbitMQ: named too)
        check(
            cli,
            args,
            valid=None,
            names=[flag, value, "heartbeat", "TICKWORK_BROKER_URL", flag.lower()],
        )

    run()


def test_stray_arguments_are_usage_errors(cli: Cli, soak: bool) -> None:
    # given: commands that take no positional arguments (or a fixed set of flags)
    @_runs(soak)
    @given(
        command=st.sampled_from(
            [
                ["hold"],
                ["release"],
                ["release", "--run-missed", "--reschedule"],
                ["keygen"],
                ["migrate"],
                ["jobs"],
                ["api-token", "list"],
                ["scheduler"],
            ]
        ),
        extra=st.lists(_any_text, min_size=1, max_size=3),
    )
    def run(command: list[str], extra: list[str]) -> None:
        # when: arbitrary extra arguments follow; then: refused naming one of them (or,
        # for release/scheduler, their own clear error), nothing changed
        check(
            cli,
            [*command, *extra],
            valid=None,
            names=[*extra, "extra argument", "--run-missed", "TICKWORK_BROKER_URL", "COMMAND"],
        )

    run()


def test_run_now_arguments_and_backfill_ranges(cli: Cli, soak: bool) -> None:
    """Issue 19: `jobs trigger --arg` and `jobs backfill --from/--to/--max`."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    moments = st.one_of(
        _any_text,
        st.datetimes(
            min_value=dt.datetime(2000, 1, 1),
            max_value=dt.datetime(2100, 1, 1),
            timezones=st.none() | st.just(dt.UTC),
        ).map(lambda d: d.isoformat()),
        st.integers(0, 400).map(lambda m: (now - dt.timedelta(minutes=m)).isoformat()),
    )

    # given: the seeded database (heartbeat has no parameters and a run queued)
    @_runs(soak)
    @given(
        pair=st.one_of(_any_text, st.tuples(_any_text, _any_text).map("=".join)),
        start=moments,
        end=moments,
        most=st.none() | st.integers(-5, 200),
    )
    def run(pair: str, start: str, end: str, most: int | None) -> None:
        # when: heartbeat is run now with an arbitrary --arg, then it is refused (it takes
        # no arguments) naming the flag, the key or the job, with nothing changed;
        check(
            cli,
            ["jobs", "trigger", "heartbeat", "--force", "--arg", pair],
            valid=False,
            names=["--arg", pair, pair.partition("=")[0], "heartbeat"],
        )
        # and when heartbeat is backfilled over an arbitrary range, then it either queues
        # runs or is refused naming what was wrong.
        args = ["jobs", "backfill", "heartbeat", "--from", start, "--to", end]
        args += ["--max", str(most)] if most is not None else []
        check(
            cli,
            args,
            valid=None,
            names=["--from", "--to", "--max", "from", "to", "max", start, end, "heartbeat"],
        )

    run()
