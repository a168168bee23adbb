"""The CLI's output module and plumbing, in-process: times, wrapping, tables that fit,
colours, errors in plain words, and every advertised environment variable accepted.

The same points are driven through the real console script in
tests/acceptance/test_cli_finish.py; these cover every command and many widths quickly.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from typer.testing import CliRunner

from admin.cli import common, output
from admin.cli.main import app
from admin.cli.output import Column
from tickwork.errors import ConfigError
from tickwork.settings import Settings, in_plain_words, load_settings


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setattr(common, "_overrides", {})  # no flags leak between invocations
    yield CliRunner()


# --- times ----------------------------------------------------------------------------------


def test_one_time_format_in_utc_whatever_the_zone_given() -> None:
    paris = dt.datetime(2026, 3, 29, 9, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert output.when(paris) == "2026-03-29 07:30:00 UTC"
    assert output.when(dt.datetime(2026, 11, 30, 14, 5)) == "2026-11-30 14:05:00 UTC"  # naive
    assert output.when(None) == "—" and output.when(None, "never") == "never"
    assert output.iso(paris) == "2026-03-29T07:30:00+00:00" and output.iso(None) is None


# --- wrapping and tables ----------------------------------------------------------------------

_words = st.text(st.sampled_from("abcdefghij0123456789/:.-_@?&="), min_size=1, max_size=40).filter(
    lambda w: bool(re.search(r"[a-j0-9]", w))
)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(_words, min_size=1, max_size=12), extra=st.integers(0, 30))
def test_wrap_breaks_between_words_or_after_separators_only(words: list[str], extra: int) -> None:
    text = " ".join(words)
    narrowest = max(cell_len(p) for w in words for p in output._segments(w))
    width = narrowest + extra
    lines = output.wrap(text, width)
    assert all(cell_len(line) <= width for line in lines)
    # nothing lost, and no run of letters or digits is ever cut
    assert "".join("".join(lines).split()) == "".join(text.split())
    assert re.findall(r"[a-j0-9]+", " ".join(lines)) == re.findall(r"[a-j0-9]+", text)


_COLUMNS = [
    Column("id", "id", wrap=False, justify="right"),
    Column("name", "name", wrap=False),
    Column("when", "when", min_width=12),
    Column("detail", "detail"),
]
_ROWS: list[dict[str, output.Cell]] = [
    {
        "id": "1",
        "name": "prune_run_history",
        "when": output.when(dt.datetime(2026, 11, 30, 14, 5, tzinfo=dt.UTC)),
        "detail": "could not connect to https://db.example.com:5432/tickwork?sslmode=require",
    },
    {"id": "22", "name": "heartbeat", "when": "—", "detail": output.status("failed")},
]


def _printed(monkeypatch: pytest.MonkeyPatch, width: int) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stdout", buffer)
    output.print_table("title", _COLUMNS, _ROWS)
    return buffer.getvalue()


@pytest.mark.parametrize("width", [30, 45, 60, 80, 100, 140, 200])
def test_a_table_fits_or_stacks_and_never_cuts_a_word(
    monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    shown = _printed(monkeypatch, width)
    assert all(cell_len(line) <= width for line in shown.splitlines()), shown
    wanted = {w for row in _ROWS for c in row.values() for w in re.findall(r"\w+", str(c))}
    assert wanted <= set(re.findall(r"\w+", shown)), shown
    stacked = re.search(r"^id +1$", shown, re.MULTILINE) is not None
    assert stacked == (output.fit_widths(_COLUMNS, _ROWS, width) is None)
    assert "\x1b[" not in shown  # not a terminal: no colour
    assert not any(line.endswith(" ") for line in shown.splitlines())


def test_fit_widths_keeps_unwrappable_columns_whole() -> None:
    widths = output.fit_widths(_COLUMNS, _ROWS, 80)
    assert widths is not None
    assert widths[1] >= len("prune_run_history") and widths[2] >= 12
    assert output.fit_widths(_COLUMNS, _ROWS, 30) is None  # too narrow: stacked instead


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert output.colour_enabled(Tty())
    assert not output.colour_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not output.colour_enabled(Tty())


def test_markdown_escapes_pipes_and_newlines(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_markdown([Column("a", "a")], [{"a": "x | y\nz"}])
    assert capsys.readouterr().out.splitlines()[-1] == "| x \\| y<br>z |"


# --- errors in plain words --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kwargs", "expected"),
    [
        ({"type": "int_parsing", "input": "x"}, {}, "expected a whole number, got 'x'"),
        (
            {"type": "greater_than_equal", "input": "0", "ctx": {"ge": 1}},
            {"bounds": {"ge": 1, "le": 10}, "whole": True},
            "expected a whole number from 1 to 10, got '0'",
        ),
        (
            {"type": "float_parsing", "input": "soon"},
            {"bounds": {"ge": 1.0}},
            "expected a number of at least 1, got 'soon'",
        ),
        (
            {"type": "literal_error", "input": "LOUD", "ctx": {"expected": "'A', 'B' or 'C'"}},
            {},
            "expected A, B or C, got 'LOUD'",
        ),
        ({"type": "bool_parsing", "input": "maybe"}, {}, "expected true or false"),
        (
            {"type": "value_error", "msg": "Value error, must be x", "input": "a://u:pw@h"},
            {},
            "must be x (got 'a://u:***@h')",
        ),
        ({"type": "int_parsing", "input": "hunter2"}, {"secret": True}, "expected a whole number"),
    ],
)
def test_pydantic_errors_in_plain_words(
    error: dict[str, Any], kwargs: dict[str, Any], expected: str
) -> None:
    said = in_plain_words(error, **kwargs)
    assert said.startswith(expected) and "Input should" not in said
    if kwargs.get("secret"):
        assert "hunter2" not in said


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["jobs", "--format", "xml"], "expected table, json or markdown, got 'xml'"),
        (["jobs", "notify-on-success", "heartbeat", "maybe"], "expected on or off, got 'maybe'"),
        (["schedule", "explain", "--format", "yaml", "* * * * *"], "expected text or json"),
        (["jobs", "history", "x", "--limit", "1001"], "expected a whole number from 1 to 1000"),
        (["probe", "liveness", "--max-age-s", "0"], "expected a number of at least 1, got '0'"),
        (["api-token", "revoke", "x"], "expected a whole number from 1 to"),
    ],
)
def test_option_errors_speak_tickwork(runner: CliRunner, args: list[str], expected: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "2000"})
    assert result.exit_code == 2
    flat = " ".join(re.sub(r"[╭╮╰╯│─]", " ", result.output).split())
    assert expected in flat, flat
    assert "Value error" not in flat and "Input should" not in flat


def test_an_unknown_setting_names_the_closest_and_tickwork_settings() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings({"TICKWORK_BROKR_URL": "amqp://x"})
    assert str(error.value) == (
        "TICKWORK_BROKR_URL: unknown setting; did you mean TICKWORK_BROKER_URL? "
        "(every setting: `tickwork settings`)"
    )


# --- every command: -h, and every advertised environment variable accepted -----------------


def test_every_command_takes_h(runner: CliRunner) -> None:
    paths = [path for path, _command in common.walk_commands()]
    assert len(paths) > 20
    for path in paths:
        result = runner.invoke(app, [*path[1:], "-h"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert f"Usage: tickwork {' '.join(path[1:])}".strip() in result.output


def test_every_environment_variable_help_advertises_is_accepted(runner: CliRunner) -> None:
    # Given what --help shows, for every command,
    advertised: set[str] = set()
    for path, _command in common.walk_commands():
        shown = runner.invoke(app, [*path[1:], "--help"], env={"COLUMNS": "2000"}).output
        advertised |= set(re.findall(r"TICKWORK_[A-Z0-9_]+", shown))
    # (every one is a setting or an option twin found by walking the app; the five of
    # issue 15 among them)
    twins = common.cli_env_twins()
    fields = {f"TICKWORK_{name.upper()}" for name in Settings.model_fields}
    assert advertised <= set(twins) | fields
    assert {
        "TICKWORK_JOBS_FORMAT",
        "TICKWORK_HISTORY_LIMIT",
        "TICKWORK_PROBE_MAX_AGE_S",
        "TICKWORK_PROBE_TIMEOUT_S",
        "TICKWORK_WORKER_QUEUES",
    } <= advertised
    # when each is set, then the settings loader accepts it (a setting, or an option twin).
    for name in sorted(advertised):
        if name in fields:
            continue
        settings_ = load_settings({name: "x"})  # raises ConfigError if refused
        assert settings_.data_dir is not None
    # and `tickwork settings` lists every one of them.
    listed = runner.invoke(app, ["settings", "--format", "json"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert advertised <= set(re.findall(r'"variable": "(TICKWORK_[A-Z0-9_]+)"', listed.output))
