"""Shared CLI plumbing: settings with flag overrides, the database, one-line errors.

Exit codes, the same for every command (and listed in ``tickwork --help``):

- 0: done.
- 1: the command was understood but failed: a check failed, the job or token it names
  does not exist, the database is not migrated, a service did not answer.
- 2: usage or configuration error: an unknown command or option, a malformed value
  (one the database cannot store included: a NUL, an unpaired surrogate, too long for
  its column), options that cannot be combined, a bad ``TICKWORK_*`` variable.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
import typer
from sqlalchemy.exc import DataError, DBAPIError, StatementError
from typer.core import TyperGroup

from schema.storable import printable, text_problem
from tickwork.errors import (
    ConfigError,
    MigrationError,
    ScheduleError,
    TickworkError,
    UnstorableInputError,
)
from tickwork.plain_words import hide_password, in_plain_words
from tickwork.settings import Settings, load_settings, settings_problems

if TYPE_CHECKING:
    from typer._click import Command, Context

    from schema.engine import Database

F = TypeVar("F", bound=Callable[..., Any])

OK, FAILED, USAGE = 0, 1, 2

EXIT_CODES = (
    "Exit codes: 0 done; 1 the operation failed (a check failed, a job or token not found, "
    "database not migrated or not reachable); 2 usage or configuration error (unknown "
    "command or option, a malformed value or one the database cannot store, a bad "
    "TICKWORK_* variable)."
)

_overrides: dict[str, Any] = {}
#: Settings given as global flags on this command line (``tickwork settings`` says so).
_flags: set[str] = set()


def set_overrides(**values: Any) -> None:
    _overrides.update({k: v for k, v in values.items() if v is not None})


def set_flags(names: set[str]) -> None:
    _flags.clear()
    _flags.update(names)


def settings() -> Settings:
    return load_settings(**_overrides)


def fail(message: str, code: int = FAILED) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def usage_error(message: str) -> typer.Exit:
    """Options that cannot be combined, and the like: exit 2, like click's usage errors."""
    return fail(message, USAGE)


def handles_errors(fn: F) -> F:
    """Turn tickwork errors into one line on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        problem = _unstorable_argument(kwargs)
        if problem is not None:
            # A NUL or an unpaired surrogate (argv bytes that are not UTF-8) in a text
            # argument: no database or broker could take it (schema.storable).
            raise fail(problem, USAGE)
        try:
            return fn(*args, **kwargs)
        except (ConfigError, ScheduleError, UnstorableInputError) as exc:
            # A bad setting, a schedule that cannot be understood, or a value the database
            # cannot hold (schema.storable): usage, like the API's 422.
            raise fail(printable(str(exc)), USAGE) from None
        except TickworkError as exc:
            raise fail(str(exc), FAILED) from None
        except DataError as exc:
            # The database refused a value: the input's fault, not the server's.
            raise fail(f"the database refused a value: {_first_line(exc)}", USAGE) from None
        except DBAPIError as exc:
            # The server is down, refuses us, or the file cannot be opened.
            raise fail(f"database: {_first_line(exc)}", FAILED) from None
        except StatementError as exc:  # a value the driver cannot even send (encoding)
            raise fail(f"the database refused a value: {_first_line(exc)}", USAGE) from None
        except PermissionError as exc:  # e.g. a data dir that cannot be created
            raise fail(f"{exc.strerror}: {exc.filename}", FAILED) from None

    return wrapper  # type: ignore[return-value]


def _unstorable_argument(kwargs: dict[str, Any]) -> str | None:
    """Why a text argument of the running command cannot be used, naming it, or None."""
    from typer._click.globals import get_current_context  # typer's own click

    context = get_current_context(silent=True)
    params = {p.name: p for p in context.command.params} if context is not None else {}
    for name, value in kwargs.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            problem = text_problem(item) if isinstance(item, str) else None
            if problem is not None:
                param = params.get(name)
                if param is not None and param.param_type_name == "option":
                    shown = param.opts[0]
                else:  # an argument: shown in capitals, as in the usage line
                    shown = name.upper()
                return f"{shown} {problem}"
    return None


def _first_line(exc: StatementError) -> str:
    lines = str(exc.orig or type(exc).__name__).strip().splitlines()
    return printable(lines[0] if lines else type(exc).__name__)


# --- the database ---------------------------------------------------------------------------
def open_database(config: Settings | None = None) -> Database:
    """The database for a CLI command, ready to use.

    Embedded mode (SQLite: ``TICKWORK_DATABASE_URL`` unset or ``sqlite:///...``): a local
    file, created and migrated on first use, so ``tickwork jobs`` works in a new folder.
    PostgreSQL is shared and migrated on purpose: if it is not at the code's revision,
    one line says what to run (:class:`MigrationError`, exit 1).
    """
    from alembic.script import ScriptDirectory

    from schema import migrate as migrations
    from schema.engine import Database

    config = config or settings()
    db = Database(config)
    try:
        current = migrations.current_revision(db.engine)
        head = migrations.head_revision()
        if current == head:
            return db
        script = ScriptDirectory.from_config(migrations.alembic_config())
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise MigrationError(
                f"the database is at revision {current}, which this tickwork does not know "
                f"(its newest is {head}): is it newer than this tickwork?"
            )
        if not config.is_sqlite:
            if current is None:
                raise MigrationError("the database is not migrated; run: tickwork migrate")
            raise MigrationError(
                f"the database is at revision {current}, not {head}; run: tickwork migrate"
            )
        migrations.upgrade(db.engine)
        if current is None:
            where = config.sqlalchemy_url.removeprefix("sqlite:///")
            typer.echo(f"note: created the embedded database {where}", err=True)
        return db
    except BaseException:
        db.dispose()
        raise


# --- environment twins of options ----------------------------------------------------------
_app: typer.Typer | None = None


def register_app(app: typer.Typer) -> None:
    """:mod:`admin.cli.main` hands its app here, so the helpers below can walk its options
    without importing the module that imports them."""
    global _app
    _app = app


def _cli_app() -> typer.Typer:
    """The ``tickwork`` app (also when run as ``python -m admin.cli.main``)."""
    if _app is None:
        raise RuntimeError("the tickwork CLI is not set up: import admin.cli.main first")
    return _app


def walk_commands(
    command: Command | None = None, path: tuple[str, ...] = ("tickwork",)
) -> Iterator[tuple[tuple[str, ...], Command]]:
    """Every command and group of the CLI with its path, e.g. ``("tickwork", "jobs")``."""
    if command is None:
        command = typer.main.get_command(_cli_app())
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk_commands(sub, (*path, name))


@functools.cache
def cli_env_twins() -> dict[str, list[str]]:
    """Every environment variable an option advertises in ``--help``, with the options it
    feeds (``TICKWORK_JOBS_FORMAT`` → ``tickwork jobs --format``). Read from the app."""
    twins: dict[str, list[str]] = {}
    for path, command in walk_commands():
        for param in command.params:
            names = param.envvar
            if not names:
                continue
            for name in [names] if isinstance(names, str) else names:
                flag = max(param.opts, key=len) if param.opts else str(param.name)
                twins.setdefault(name, []).append(" ".join((*path, flag)))
    return twins


@dataclass(frozen=True)
class OptionTwin:
    variable: str
    options: list[str]
    default: Any


def option_twins() -> list[OptionTwin]:
    """The twins that are not settings, with their option's default."""
    fields = {f"TICKWORK_{name.upper()}" for name in Settings.model_fields}
    defaults: dict[str, Any] = {}
    for _path, command in walk_commands():
        for param in command.params:
            names = param.envvar
            for name in [names] if isinstance(names, str) else names or []:
                default = param.default
                defaults[name] = default.value if isinstance(default, Enum) else default
    return [
        OptionTwin(name, options, defaults.get(name))
        for name, options in sorted(cli_env_twins().items())
        if name not in fields
    ]


# --- click's errors, in tickwork's words ------------------------------------------------------
def _one_of(choices: list[str]) -> str:
    return choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]


def reword(exc: typer.BadParameter) -> None:
    """Replace the pydantic wording of a bad option value ("Input should be...", "Value
    error, 'maybe' is not one of 'on', 'off'") with tickwork's ("expected on or off, got
    'maybe'")."""
    cause = exc.__cause__
    if not isinstance(cause, pydantic.ValidationError) or not cause.errors():
        return
    error = cause.errors()[0]
    descriptor = getattr(exc.param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None)
    if choices:
        names = [str(c.value) if isinstance(c, Enum) else str(c) for c in choices]
        exc.message = f"expected {_one_of(names)}, got {error.get('input')!r}"
        return
    annotation = getattr(descriptor, "annotation", None)
    bounds = {
        key: value
        for key, value in (
            ("ge", getattr(exc.param, "min", None)),
            ("le", getattr(exc.param, "max", None)),
        )
        if value is not None
    }
    whole = annotation is int if annotation in (int, float) else None
    exc.message = in_plain_words(error, bounds=bounds or None, whole=whole)


def _where_it_belongs(exc: Exception, root: Command) -> None:
    """An option given to the wrong command is refused (click); say where it belongs."""
    option = getattr(exc, "option_name", None)
    message = getattr(exc, "message", None)
    if type(exc).__name__ != "NoSuchOption" or not option or not isinstance(message, str):
        return
    owners = [
        " ".join(path)
        for path, command in walk_commands(root)
        if any(option in (*p.opts, *p.secondary_opts) for p in command.params)
    ]
    if not owners:
        return
    if owners == ["tickwork"]:
        hint = f"{option} is a global option: put it before the command (tickwork {option} ...)"
    else:
        hint = f"{option} is an option of: {', '.join(owners)}"
    exc.message = f"{message.rstrip('.')}; {hint}"  # type: ignore[attr-defined]


class TickworkGroup(TyperGroup):
    """The root command: parameter errors of every sub-command are reworded, and an option
    given to the wrong command names the command it belongs to."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Context | None = None, **extra: Any
    ) -> Context:
        with _in_tickwork_words(self):
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Context) -> Any:
        with _in_tickwork_words(self):
            return super().invoke(ctx)


@contextlib.contextmanager
def _in_tickwork_words(root: Command) -> Iterator[None]:
    """Click's errors raised inside, reworded before they reach the user."""
    try:
        yield
    except typer.BadParameter as exc:
        reword(exc)
        raise
    except Exception as exc:
        _where_it_belongs(exc, root)
        raise


def closest(name: str, known: list[str]) -> str | None:
    """The known name closest to a mistyped one (case-insensitive), if any is close."""
    lowered = {k.lower(): k for k in known}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


# --- tickwork settings ----------------------------------------------------------------------
MASK = "********"


def _shown(value: Any, secret: bool) -> Any:
    """A value as JSON may carry it, with secrets masked."""
    if value is None or value == "":
        return None
    if secret or isinstance(value, pydantic.SecretStr):
        return MASK
    if isinstance(value, str):
        return hide_password(value)
    if isinstance(value, bool | int | float):
        return value
    return str(value)


def _as_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class SettingRow:
    variable: str
    value: Any
    source: str  # env, flag or default
    default: Any
    meaning: str
    kind: str  # setting, or option (the environment twin of a command's option)

    def cells(self) -> dict[str, str]:
        default = _as_text(self.default)
        return {
            "variable": self.variable,
            "value": _as_text(self.value),
            "source": self.source,
            "default": default,
            # One column for narrow terminals: a default value is its own default.
            "from": "default" if self.source == "default" else f"{self.source}, default {default}",
            "meaning": self.meaning,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "variable": self.variable,
            "value": self.value,
            "source": self.source,
            "default": self.default,
            "kind": self.kind,
            "meaning": self.meaning,
        }


@dataclass(frozen=True)
class SettingsReport:
    rows: list[SettingRow]
    problems: list[str]


def settings_report(environ: dict[str, str] | None = None) -> SettingsReport:
    """What ``tickwork settings`` shows: every setting and option twin, and every problem
    (unknown or malformed variables), without stopping at the first."""
    env = dict(os.environ if environ is None else environ)
    problems = settings_problems(env, **_overrides)
    try:
        config: Settings | None = load_settings(env, **_overrides)
    except ConfigError:
        config = None
    rows = []
    for name, info in Settings.model_fields.items():
        variable = f"TICKWORK_{name.upper()}"
        secret = "SecretStr" in str(info.annotation)
        if name in _flags:
            source = "flag"
        elif variable in env:
            source = "env"
        else:
            source = "default"
        if config is not None:
            value = getattr(config, name)
        else:  # some value is malformed: show what was given
            value = _overrides.get(name, env.get(variable, info.default))
        rows.append(
            SettingRow(
                variable,
                _shown(value, secret),
                source,
                _shown(info.default, secret),
                info.description or "",
                "setting",
            )
        )
    for twin in option_twins():
        given = twin.variable in env
        rows.append(
            SettingRow(
                twin.variable,
                _shown(env[twin.variable] if given else twin.default, False),
                "env" if given else "default",
                _shown(twin.default, False),
                "default of " + ", ".join(f"`{o}`" for o in twin.options),
                "option",
            )
        )
    return SettingsReport(rows, problems)


def setup_logging(level: str, role: str = "cli", fmt: str | None = None) -> None:
    """This process's logging, as every tickwork process logs (see tickwork/logs.py):
    ``fmt`` (default: TICKWORK_LOG_FORMAT) on stderr, each line naming ``role``."""
    from tickwork.logs import configure_logging

    configure_logging(level, fmt or settings().log_format, role=role)
