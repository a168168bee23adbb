"""``tickwork runs failures|cancel|retry``: the failures feed of every job, and control
of one run (cancel a queued or running run, retry a failed one).

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import typer

from admin.cli import output
from admin.cli.common import handles_errors, usage_error
from admin.cli.output import Format

app = typer.Typer(help="Recent failures of every job; cancel or retry a run.", no_args_is_help=True)

RunId = Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="A run's id (see history).")]
_AGO = re.compile(r"^\s*(\d{1,6})\s*([mhd])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str | None, flag: str = "--since") -> dt.datetime | None:
    """``30m``, ``24h``, ``7d`` (that long ago) or an ISO time (UTC unless it names a
    zone); anything else is a usage error naming the flag."""
    if value is None:
        return None
    ago = _AGO.match(value)
    if ago:
        return output.as_utc(dt.datetime.now(dt.UTC)) - dt.timedelta(
            **{_UNITS[ago.group(2)]: int(ago.group(1))}
        )
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise usage_error(
            f"{flag}: expected a time like 2026-11-30T08:00 or a span like 30m, 24h, 7d; "
            f"got {value!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@app.command()
@handles_errors
def failures(
    job: Annotated[str | None, typer.Option("--job", help="Only this job.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Finished since: 30m, 24h, 7d or an ISO time.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest failures shown.")] = 50,
    format: Annotated[
        Format, typer.Option("--format", "-f", help=output.FORMAT_HELP)
    ] = Format.table,
) -> None:
    """Recent failed runs of every job (or --job), newest first."""
    from admin.cli.jobs import _RUN_COLUMNS, _db, _known, _run_json, _run_row
    from admin.job_status import recent_failures

    after = parse_since(since)
    name = _known(job) if job else None
    runs = recent_failures(_db(), job_name=name, since=after, limit=limit)
    output.render(
        format,
        title=f"failures{f' of {name}' if name else ''}, newest first (at most {limit})",
        columns=[output.Column("job", "job", wrap=False), *_RUN_COLUMNS],
        rows=[{"job": r.job_name, **_run_row(r)} for r in runs],
        data=[_run_json(r) for r in runs],
        empty=f"no failures{f' of {name}' if name else ''}"
        + (f" since {output.when(after)}" if after else ""),
    )


@app.command()
@handles_errors
def cancel(run_id: RunId) -> None:
    """Cancel a queued run at once, or ask a running one to stop.

    A running run stops at its job's next check and is recorded canceled however it
    ends. A finished run is refused (exit 1).
    """
    from admin.cli.jobs import _db
    from schema.audit import cli_actor
    from workers.scheduler import control

    status = control.cancel_run(_db(), run_id, actor=cli_actor())
    if status == "canceled":
        typer.echo(f"run {run_id} canceled")
    else:
        typer.echo(f"cancel of run {run_id} requested: it stops at its job's next check")


@app.command()
@handles_errors
def retry(run_id: RunId) -> None:
    """Retry a failed run: a new run of its job, linked to it.

    Refused (exit 1) unless the run failed.
    """
    from admin.cli.jobs import _broker, _db
    from schema.audit import cli_actor
    from workers.scheduler import control

    db = _db()
    control.check_retryable(db, run_id)
    new_id = control.retry_run(db, _broker(db), run_id, actor=cli_actor())
    typer.echo(f"queued run {new_id}, a retry of run {run_id}")
