"""``tickwork schedule explain``: what a schedule means and when it fires.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Annotated

import typer

from admin.cli import output
from admin.cli.common import handles_errors
from tickwork.errors import ScheduleError

app = typer.Typer(help="Understand schedule expressions.", no_args_is_help=True)


class ExplainFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
@handles_errors
def explain(
    expression: str,
    tz: Annotated[str, typer.Option("--tz", envvar="TICKWORK_SCHEDULE_TZ")] = "UTC",
    start: Annotated[
        str | None, typer.Option("--from", help="ISO 8601 start (default: now)")
    ] = None,
    count: Annotated[int, typer.Option(min=1, max=1000)] = 5,
    format: Annotated[
        ExplainFormat, typer.Option("--format", "-f", help="text or json.")
    ] = ExplainFormat.text,
) -> None:
    """Say a schedule in words and list its next fire times (in UTC, and in --tz)."""
    from tickwork.schedules import parse_schedule

    schedule = parse_schedule(expression, tz)
    if start is None:
        begin = dt.datetime.now(dt.UTC)
    else:
        try:
            begin = dt.datetime.fromisoformat(start)
        except ValueError:
            raise ScheduleError(f"--from {start!r} is not an ISO 8601 date-time") from None
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=schedule.tz)
    try:
        moments = [t.astimezone(schedule.tz) for t in schedule.next_n(begin, count)]
        in_utc = [output.when(t) for t in moments]
    except (ValueError, OverflowError) as exc:  # fire times past the year 9999
        raise ScheduleError(
            f"schedule {expression!r}: no {count} fire times after {begin.isoformat()} ({exc})"
        ) from None
    fires = [t.isoformat() for t in moments]
    if format is ExplainFormat.json:
        typer.echo(
            json.dumps(
                {
                    "expression": expression,
                    "words": schedule.words(),
                    "timezone": tz,
                    "next": fires,
                    "warnings": schedule.warnings(),
                },
                indent=2,
            )
        )
        return
    typer.echo(f"{expression}  →  {schedule.words()}")  # the words name a non-UTC zone
    for warning in schedule.warnings():
        typer.echo(f"warning: {warning}", err=True)
    for moment, utc in zip(moments, in_utc, strict=True):
        local = ""
        if moment.utcoffset() != dt.timedelta(0) or tz.upper() != "UTC":
            local = f"  ({moment.strftime('%Y-%m-%d %H:%M:%S')} {moment.tzname()}, {tz})"
        typer.echo(f"  {utc}{local}")
