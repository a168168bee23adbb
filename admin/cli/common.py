"""Shared CLI plumbing: loading settings with flag overrides, one-line errors."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from sqlalchemy.exc import DBAPIError

from tickwork.errors import ConfigError, TickworkError
from tickwork.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])

_overrides: dict[str, Any] = {}


def set_overrides(**values: Any) -> None:
    _overrides.update({k: v for k, v in values.items() if v is not None})


def settings() -> Settings:
    return load_settings(**_overrides)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handles_errors(fn: F) -> F:
    """Turn tickwork errors into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            raise fail(str(exc), 2) from None
        except TickworkError as exc:
            raise fail(str(exc), 1) from None
        except DBAPIError as exc:
            # e.g. "no such table" before `tickwork migrate`, or the server is down.
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise fail(
                f"database: {detail} (is it reachable, and migrated with `tickwork migrate`?)", 1
            ) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
