"""``tickwork schedule explain``: what a schedule means and when it fires."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from admin.cli.common import handles_errors
from tickwork.errors import ScheduleError

app = typer.Typer(help="Understand schedule expressions.", no_args_is_help=True)


@app.command()
@handles_errors
def explain(
    expression: str,
    tz: Annotated[str, typer.Option("--tz", envvar="TICKWORK_SCHEDULE_TZ")] = "UTC",
    start: Annotated[
        str | None, typer.Option("--from", help="ISO 8601 start (default: now)")
    ] = None,
    count: Annotated[int, typer.Option(min=1, max=1000)] = 5,
    format: Annotated[str, typer.Option("--format", help="text or json")] = "text",
) -> None:
    """Say a schedule in words and list its next fire times."""
    from tickwork.schedules import parse_schedule

    if format not in ("text", "json"):
        raise ScheduleError(f"--format must be text or json, not {format!r}")
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
        fires = [t.astimezone(schedule.tz).isoformat() for t in schedule.next_n(begin, count)]
    except (ValueError, OverflowError) as exc:  # fire times past the year 9999
        raise ScheduleError(
            f"schedule {expression!r}: no {count} fire times after {begin.isoformat()} ({exc})"
        ) from None
    if format == "json":
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
    typer.echo(f"{expression}  →  {schedule.words()}  [{tz}]")
    for warning in schedule.warnings():
        typer.echo(f"warning: {warning}", err=True)
    for fire in fires:
        typer.echo(f"  {fire}")
