"""A CLI that feels finished (issue 15), driven through the real console script.

Each test runs ``tickwork`` as a user would (a new process, a temporary folder,
``TICKWORK_DATA_DIR`` inside it) and checks what the user sees: version and help, shell
completion, environment twins that are accepted, ``tickwork settings``, ``--format`` on
every listing, options before or after a sub-command, tables that fit 80 columns,
colours only on a terminal, the "held" banner, errors in tickwork's words with the
documented exit codes, one time format, and a first use that just works.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import select
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import (
    FERNET_KEY,
    SESSION_ID,
    postgres_database,
    run_tickwork,
    services_env,
    tickwork_command,
    tickwork_env,
)

TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
LONG_ERROR = (
    'psycopg.OperationalError: connection to server at "db.internal.example.com" '
    "(10.1.2.3), port 5432 failed: Connection refused. Is the server running on "
    "https://db.internal.example.com:5432/tickwork?sslmode=require&application_name=worker"
)


def tw(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``tickwork ARGS`` in ``cwd`` with its data dir inside it."""
    return run_tickwork(*args, cwd=cwd, **{"TICKWORK_DATA_DIR": str(cwd / "data"), **env})


def flat(text: str) -> str:
    """Text without rich's error box and line breaks, for matching messages."""
    return " ".join(re.sub(r"[╭╮╰╯│─]", " ", text).split())


def alnum_runs(text: str) -> set[str]:
    """Runs of letters and digits: a table that cuts a word mid-way splits one of them."""
    return set(re.findall(r"[A-Za-z0-9]+", text))


def _seed(folder: Path) -> Path:
    """An embedded database with runs of heartbeat (succeeded, failed with a long error,
    skipped) and one API token."""
    from admin.api.auth import create_token
    from schema import migrate as migrations
    from schema.engine import Database
    from schema.scheduling import JobRun
    from tickwork.settings import load_settings

    db = Database(load_settings({"TICKWORK_DATA_DIR": str(folder / "data")}))
    migrations.upgrade(db.engine)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with db.session() as session:
        for minutes, status, extra in (
            (3, "succeeded", {"output": "beat", "records_processed": 1}),
            (2, "failed", {"error": "Traceback (most recent call last):\n" + LONG_ERROR}),
            (1, "skipped", {"skip_reason": "previous run still running"}),
        ):
            at = now - dt.timedelta(minutes=minutes)
            session.add(
                JobRun(
                    job_name="heartbeat",
                    scheduled_for=at,
                    trigger="schedule",
                    status=status,
                    started_at=at,
                    finished_at=at + dt.timedelta(seconds=1),
                    **extra,
                )
            )
    create_token(db, "ci bot")
    db.dispose()
    return folder


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded folder for tests that only read it."""
    return _seed(tmp_path_factory.mktemp("seeded"))


# --- 1. version, -h, shell completion ------------------------------------------------------


def test_version_short_help_and_exit_codes_in_help(tmp_path: Path) -> None:
    # When the version is asked for, then it is printed from the installed metadata.
    shown = tw("--version", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout == f"tickwork {version('tickwork')}\n"
    # When -h is given at the top, or to a sub-command, then it is --help.
    top = tw("-h", cwd=tmp_path, COLUMNS="100")
    assert top.returncode == 0 and "Usage: tickwork [OPTIONS] COMMAND" in top.stdout
    assert "-h" in top.stdout and "--install-completion" in top.stdout
    # and the exit codes are documented there.
    text = flat(top.stdout)
    assert "Exit codes: 0 done; 1 the operation failed" in text
    assert "2 usage or configuration error" in text
    sub = tw("jobs", "history", "-h", cwd=tmp_path)
    assert sub.returncode == 0 and "Usage: tickwork jobs history" in sub.stdout


def test_shell_completion_completes_job_names(tmp_path: Path) -> None:
    # Given bash, when its completion script is asked for, then it is printed;
    script = tw("--show-completion", "bash", cwd=tmp_path)
    assert script.returncode == 0 and "_TICKWORK_COMPLETE=complete_bash" in script.stdout
    # and when the shell asks for completions, job names (and commands) are offered.
    jobs = tw(
        cwd=tmp_path,
        _TICKWORK_COMPLETE="complete_bash",
        COMP_WORDS="tickwork jobs disable hea",
        COMP_CWORD="3",
    )
    assert jobs.stdout.split() == ["heartbeat"]


# --- 2. every advertised environment variable is accepted; tickwork settings ----------------


def test_option_twins_are_accepted_and_honoured(tmp_path: Path) -> None:
    import admin.cli.main  # noqa: F401  (sets the CLI up: its twins are read from it)
    from admin.cli.common import option_twins

    twins = {t.variable: t for t in option_twins()}
    named = {
        "TICKWORK_JOBS_FORMAT",
        "TICKWORK_HISTORY_LIMIT",
        "TICKWORK_PROBE_MAX_AGE_S",
        "TICKWORK_PROBE_TIMEOUT_S",
        "TICKWORK_WORKER_QUEUES",
    }
    assert named <= set(twins)
    # Given every option twin that is not a setting, set to its option's default,
    env = {name: str(t.default) for name, t in twins.items() if t.default is not None}
    env["TICKWORK_WORKER_QUEUES"] = "default"
    # when the settings are listed, then none is refused, and each is shown as given.
    listed = tw("settings", "--format", "json", cwd=tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["variable"]: row for row in json.loads(listed.stdout)}
    for name, value in env.items():
        assert rows[name]["source"] == "env" and str(rows[name]["value"]) == value, name
    # And the twins are honoured by their commands.
    as_json = tw("jobs", cwd=tmp_path, **{**env, "TICKWORK_JOBS_FORMAT": "json"})
    assert as_json.returncode == 0, as_json.stderr
    assert "heartbeat" in {job["name"] for job in json.loads(as_json.stdout)}


def test_an_unknown_variable_names_the_closest_and_the_list(tmp_path: Path) -> None:
    # When a twin is mistyped, then one line names it, the closest, and `tickwork settings`.
    typo = tw("jobs", cwd=tmp_path, TICKWORK_JOBS_FROMAT="json")
    assert typo.returncode == 2
    assert typo.stderr == (
        "error: TICKWORK_JOBS_FROMAT: unknown setting; did you mean TICKWORK_JOBS_FORMAT? "
        "(every setting: `tickwork settings`)\n"
    )
    # and `tickwork settings` itself still lists everything, then names the problem.
    listed = tw("settings", cwd=tmp_path, TICKWORK_JOBS_FROMAT="json", COLUMNS="80")
    assert listed.returncode == 2
    assert "TICKWORK_JOBS_FORMAT" in listed.stdout and "TICKWORK_DATA_DIR" in listed.stdout
    assert listed.stderr.startswith("error: TICKWORK_JOBS_FROMAT: unknown setting")


def test_settings_shows_value_source_default_with_secrets_masked(tmp_path: Path) -> None:
    from tickwork.settings import Settings

    secrets = {
        "TICKWORK_FERNET_KEY": FERNET_KEY,
        "TICKWORK_SMTP_PASSWORD": "hunter2-secret",
        "TICKWORK_BROKER_URL": "amqp://guest:s3cret-pw@127.0.0.1:5672/%2F",
    }
    env = {**secrets, "TICKWORK_WORKER_THREADS": "3"}
    # When settings are listed as JSON, with one given as a flag,
    listed = tw("--log-level", "debug", "settings", "--format", "json", cwd=tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["variable"]: row for row in json.loads(listed.stdout)}
    # then every setting is there, with its value, where it came from, and its default;
    assert {f"TICKWORK_{name.upper()}" for name in Settings.model_fields} <= set(rows)
    threads = rows["TICKWORK_WORKER_THREADS"]
    assert (threads["value"], threads["source"], threads["default"]) == (3, "env", 8)
    level = rows["TICKWORK_LOG_LEVEL"]
    assert (level["value"], level["source"], level["default"]) == ("DEBUG", "flag", "INFO")
    retries = rows["TICKWORK_MAX_RETRIES"]
    assert (retries["value"], retries["source"], retries["default"]) == (5, "default", 5)
    assert rows["TICKWORK_DATA_DIR"]["source"] == "env"  # the test's data dir
    # and secrets are masked: secret settings entirely, passwords in URLs.
    assert rows["TICKWORK_FERNET_KEY"]["value"] == "********"
    assert rows["TICKWORK_SMTP_PASSWORD"]["value"] == "********"
    assert rows["TICKWORK_BROKER_URL"]["value"] == "amqp://guest:***@127.0.0.1:5672/%2F"
    table = tw("settings", cwd=tmp_path, COLUMNS="80", **env)
    assert table.returncode == 0
    for shown in (listed, table):
        for secret in ("hunter2-secret", "s3cret-pw", FERNET_KEY):
            assert secret not in shown.stdout + shown.stderr
    # The table fits 80 columns, each variable whole on its line.
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    words = set(table.stdout.split())
    assert {f"TICKWORK_{name.upper()}" for name in Settings.model_fields} <= words


# --- 3. --format on every listing; options before / after a sub-command ---------------------

LISTINGS = [
    ["jobs"],
    ["jobs", "history", "heartbeat"],
    ["api-token", "list"],
    ["check"],
    ["settings"],
]


@pytest.mark.parametrize("listing", LISTINGS, ids=" ".join)
def test_every_listing_takes_format_and_its_table_fits_80_columns(
    seeded: Path, listing: list[str]
) -> None:
    # When a listing is asked for as JSON, then stdout is JSON (a list of rows);
    as_json = tw(*listing, "--format", "json", cwd=seeded)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)
    # as markdown, a pipe table with one line per row;
    as_markdown = tw(*listing, "-f", "markdown", cwd=seeded)
    lines = as_markdown.stdout.splitlines()
    assert as_markdown.returncode == 0 and lines[0].startswith("| ")
    assert re.fullmatch(r"\|(-{3}:?\|)+", lines[1]) and len(lines) == len(rows) + 2
    # as a table on an 80-column terminal, no line is wider,
    table = tw(*listing, cwd=seeded, COLUMNS="80")
    assert table.returncode == 0, table.stderr
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    # and nothing disappears or is cut mid-word: every word of the rows is there whole.
    wanted: set[str] = set()
    for row in rows:
        for key, value in row.items():
            if key in ("description", "meaning", "kind", "output", "error", "schedule_source"):
                continue  # not in the table (the error: its last line, checked below)
            if key in ("overlap", "catchup", "interval_from") and value in ("skip", "epoch"):
                continue  # a job's policies are shown only when not the default
            if isinstance(value, str) and not re.fullmatch(r"\d{4}-.*\+00:00", value):
                wanted |= alnum_runs(value)
    missing = wanted - alnum_runs(table.stdout)
    assert not missing, sorted(missing)[:10]
    if listing[:2] == ["jobs", "history"]:
        assert alnum_runs(LONG_ERROR) <= alnum_runs(table.stdout)
        assert len(TIME.findall(table.stdout)) == 9  # 3 runs x slot, started, finished


def test_a_wider_terminal_gets_a_table_that_still_cuts_no_word(seeded: Path) -> None:
    table = tw("jobs", "history", "heartbeat", cwd=seeded, COLUMNS="120").stdout
    assert re.search(r"^run +slot +trigger +status", table, re.MULTILINE)  # a table
    assert all(len(line) <= 120 for line in table.splitlines())
    assert alnum_runs(LONG_ERROR) <= alnum_runs(table)


def test_a_bad_format_is_refused_in_plain_words(tmp_path: Path) -> None:
    bad = tw("api-token", "list", "--format", "xml", cwd=tmp_path, COLUMNS="200")
    assert bad.returncode == 2
    assert "expected table, json or markdown, got 'xml'" in flat(bad.stderr)


def test_an_option_before_or_after_a_sub_command_is_honoured_or_refused(tmp_path: Path) -> None:
    seeded = _seed(tmp_path)
    # Given --format before `history`, then history honours it;
    before = tw("jobs", "--format", "json", "history", "heartbeat", cwd=seeded)
    assert before.returncode == 0, before.stderr
    assert [run["status"] for run in json.loads(before.stdout)][:3] == [
        "skipped",
        "failed",
        "succeeded",
    ]
    # given --format before a sub-command that lists nothing, then it is refused (exit 2),
    # and nothing was done.
    refused = tw("jobs", "-f", "json", "trigger", "heartbeat", cwd=seeded)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith("error: --format applies to `tickwork jobs`")
    runs = json.loads(tw("jobs", "history", "heartbeat", "-f", "json", cwd=seeded).stdout)
    assert len(runs) == 3
    # (the environment twin is a default, not a flag: it does not stop a trigger; as if
    # `tickwork run` were running, which starts the runs the CLI records)
    from tickwork.settings import load_settings
    from workers.heartbeat import beat, heartbeat_path

    beat(heartbeat_path(load_settings({"TICKWORK_DATA_DIR": str(seeded / "data")}), "run"))
    queued = tw("jobs", "trigger", "heartbeat", cwd=seeded, TICKWORK_JOBS_FORMAT="json")
    assert queued.returncode == 0 and queued.stdout.startswith("queued run")
    # An option given to the wrong command is refused, naming where it belongs.
    misplaced = tw("--format", "json", "jobs", cwd=seeded, COLUMNS="300")
    assert misplaced.returncode == 2
    assert "No such option: --format; --format is an option of:" in flat(misplaced.stderr)
    late_global = tw("jobs", "history", "heartbeat", "--data-dir", "x", cwd=seeded, COLUMNS="300")
    assert late_global.returncode == 2
    assert "--data-dir is a global option: put it before the command" in flat(late_global.stderr)


# --- 4. tables fit the terminal; colours only on a terminal ---------------------------------


def _on_a_terminal(args: list[str], cwd: Path, **env: str) -> str:
    """Run tickwork with stdout on a pseudo-terminal; what it printed."""
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen(
        tickwork_command(*args),
        cwd=cwd,
        env=tickwork_env(
            TICKWORK_DATA_DIR=str(cwd / "data"), TERM="xterm-256color", COLUMNS="200", **env
        ),
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                out += chunk
            elif process.poll() is not None:
                break
    finally:
        process.wait(60)
        os.close(master)
    return out.decode()


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_status_colours_only_on_a_terminal(seeded: Path) -> None:
    history = ["jobs", "history", "heartbeat"]
    # On a terminal, statuses are coloured: succeeded green, failed red, skipped yellow;
    coloured = _on_a_terminal(history, seeded)
    assert "\x1b[32msucceeded" in coloured
    assert "\x1b[31mfailed" in coloured
    assert "\x1b[33mskipped" in coloured
    # with NO_COLOR, or piped, nothing is.
    assert "\x1b[" not in _on_a_terminal(history, seeded, NO_COLOR="1")
    assert "\x1b[" not in tw(*history, cwd=seeded).stdout


# --- 5. held banner; hold and release say what they did -------------------------------------


def test_held_banner_and_hold_release_say_so(tmp_path: Path) -> None:
    # Given nothing held, when released, then it says so and succeeds;
    nothing = tw("release", "--reschedule", cwd=tmp_path)
    assert nothing.returncode == 0 and nothing.stdout == "nothing is held; nothing to release\n"
    # when held twice, then the second says it already was;
    assert tw("hold", cwd=tmp_path).stdout == "all jobs held\n"
    again = tw("hold", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("already held since ")
    assert TIME.search(again.stdout) and again.stdout.endswith("; nothing changed\n")
    # while held, the listing starts with a banner (on stderr when stdout is JSON),
    table = tw("jobs", cwd=tmp_path, COLUMNS="80")
    assert table.stdout.startswith("HELD since ")
    assert "no job is dispatched until `tickwork release" in flat(table.stdout)
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    as_json = tw("jobs", "--format", "json", cwd=tmp_path)
    assert as_json.stderr.startswith("HELD since ")
    assert all(job["next_run"] is None for job in json.loads(as_json.stdout))
    # and release releases.
    assert tw("release", "--reschedule", cwd=tmp_path).stdout.startswith("released")


# --- 6. errors in tickwork's words; exit codes ----------------------------------------------


def test_errors_speak_tickwork_with_documented_exit_codes(tmp_path: Path) -> None:
    wide = {"COLUMNS": "300"}  # click's error box on one line
    # A bad value of an on/off argument: exit 2, in plain words.
    maybe = tw("jobs", "notify-on-success", "heartbeat", "maybe", cwd=tmp_path, **wide)
    assert maybe.returncode == 2
    assert "expected on or off, got 'maybe'" in flat(maybe.stderr)
    limit = tw("jobs", "history", "heartbeat", "--limit", "0", cwd=tmp_path, **wide)
    assert limit.returncode == 2
    assert "expected a whole number from 1 to 1000, got '0'" in flat(limit.stderr)
    # A bad setting: exit 2, one line naming it.
    threads = tw("jobs", cwd=tmp_path, TICKWORK_WORKER_THREADS="many")
    assert threads.returncode == 2
    assert threads.stderr == (
        "error: TICKWORK_WORKER_THREADS: expected a whole number from 1 to 256, got 'many'\n"
    )
    for shown in (maybe, limit, threads):
        for pydantic_words in ("Value error", "Input should", "is not one of"):
            assert pydantic_words not in shown.stderr
    # A wrong job name: the closest one is suggested; the operation failed: exit 1.
    typo = tw("jobs", "disable", "hartbeat", cwd=tmp_path)
    assert typo.returncode == 1
    assert typo.stderr == "error: unknown job 'hartbeat'; did you mean heartbeat?\n"
    # Usage errors: exit 2 (click's and ours alike).
    assert tw("jbos", cwd=tmp_path).returncode == 2
    assert tw("release", cwd=tmp_path).returncode == 2
    both = tw("jobs", "set-schedule", "heartbeat", "--clear", "--times", "02:00", cwd=tmp_path)
    assert both.returncode == 2 and both.stderr.startswith("error: --clear cannot be combined")
    # A failed check: exit 1.
    broken = tw("check", cwd=tmp_path, TICKWORK_JOB_MODULES="my_jobz")
    assert broken.returncode == 1 and "my_jobz" in broken.stdout


# --- 7. one time format ---------------------------------------------------------------------


def test_times_have_one_format_in_utc(seeded: Path) -> None:
    shown = [
        tw("jobs", cwd=seeded, COLUMNS="200").stdout,
        tw("api-token", "list", cwd=seeded, COLUMNS="200").stdout,
    ]
    for text in shown:
        # Every time of day is followed by the zone, UTC; no ISO 8601 in tables.
        assert TIME.search(text), text
        assert not re.search(r"\d\d:\d\d:\d\d(?! UTC)", text), text
        assert not re.search(r"\dT\d\d:", text), text
    explained = tw(
        "schedule", "explain", "0 30 9 * * *", "--tz", "Europe/Paris", "--from",
        "2026-03-28T12:00:00+00:00", "--count", "2", cwd=seeded,
    )  # fmt: skip
    fires = [line.strip() for line in explained.stdout.splitlines()[1:]]
    # a schedule's fire times: UTC first, then the same moment in the schedule's zone.
    assert fires == [
        "2026-03-29 07:30:00 UTC  (2026-03-29 09:30:00 CEST, Europe/Paris)",
        "2026-03-30 07:30:00 UTC  (2026-03-30 09:30:00 CEST, Europe/Paris)",
    ]


# --- 8. first use ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["jobs"], ["jobs", "history", "heartbeat"], ["api-token", "list"], ["check"]],
    ids=" ".join,
)
def test_read_only_commands_work_in_a_new_folder(tmp_path: Path, command: list[str]) -> None:
    # Given a folder where nothing has run (embedded mode), when a read-only command runs,
    result = tw(*command, cwd=tmp_path)
    # then it works: the SQLite database is created and migrated on first use, and one
    # note on stderr says so.
    assert result.returncode == 0, result.stderr
    database = tmp_path / "data" / "tickwork.sqlite3"
    assert database.exists()
    assert result.stderr == f"note: created the embedded database {database.resolve()}\n"


def test_an_explicit_sqlite_url_is_created_on_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mine.sqlite3'}"
    result = tw("jobs", "--format", "json", cwd=tmp_path, TICKWORK_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert "heartbeat" in {job["name"] for job in json.loads(result.stdout)}
    assert (tmp_path / "mine.sqlite3").exists()


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A PostgreSQL database that exists but was never migrated."""
    with postgres_database(f"tickwork_test_{SESSION_ID}_{uuid.uuid4().hex[:6]}_fresh") as url:
        yield url


def test_postgres_not_migrated_says_what_to_run(tmp_path: Path, empty_postgres: str) -> None:
    env = services_env(empty_postgres)
    # Given a PostgreSQL database never migrated, when the CLI reads it,
    for command in (["jobs"], ["jobs", "history", "heartbeat"]):
        result = tw(*command, cwd=tmp_path, **env)
        # then one line says exactly what to run, exit 1 (nothing is migrated behind its back);
        assert result.returncode == 1, command
        assert result.stderr == "error: the database is not migrated; run: tickwork migrate\n"
    check = tw("check", "--format", "json", cwd=tmp_path, **env)
    database = next(c for c in json.loads(check.stdout) if c["check"] == "database")
    assert check.returncode == 1 and database == {
        "check": "database",
        "ok": False,
        "detail": "the database is not migrated; run: tickwork migrate",
    }
    # and once migrated as told, it works.
    assert tw("migrate", cwd=tmp_path, **env).returncode == 0
    assert tw("jobs", cwd=tmp_path, **env).returncode == 0
