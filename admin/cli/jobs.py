"""``tickwork jobs ...``, ``tickwork hold`` and ``tickwork release``."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from admin.cli.common import handles_errors, settings
from schema.engine import Database

app = typer.Typer(help="List, inspect and control scheduled jobs.", invoke_without_command=True)


class Format(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


def _db() -> Database:
    from workers.app import import_job_modules

    config = settings()
    import_job_modules(config)  # built-in jobs and TICKWORK_JOB_MODULES
    return Database(config)


def _broker(db: Database):  # type: ignore[no-untyped-def]
    from workers.app import build_runtime

    return build_runtime(db.settings, db).broker


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


@app.callback()
@handles_errors
def list_jobs(
    ctx: typer.Context,
    format: Annotated[
        Format, typer.Option("--format", "-f", envvar="TICKWORK_JOBS_FORMAT")
    ] = Format.table,
) -> None:
    """List every job with its schedule in words, next run, last run/success/skip."""
    if ctx.invoked_subcommand is not None:
        return
    from admin.job_status import job_statuses

    statuses = job_statuses(_db())
    if format is Format.json:
        typer.echo(json.dumps([s.as_json() for s in statuses], indent=2))
        return
    if format is Format.markdown:
        typer.echo("| Job Name | Schedule | Frequency | Description |")
        typer.echo("|----------|----------|-----------|-------------|")
        for s in statuses:
            sched = f"`{s.schedule}`" if s.schedule else "on demand"
            typer.echo(f"| `{s.name}` | {sched} | {s.schedule_words} | {s.description} |")
        return
    console = Console()
    wide = console.width >= 130  # narrow terminals get the essentials only
    now = dt.datetime.now(dt.UTC)
    table = Table(title="tickwork jobs (times UTC)", box=box.SIMPLE_HEAD, expand=False)
    table.add_column("job", no_wrap=True)
    if wide:
        table.add_column("schedule", no_wrap=True)
    table.add_column("in words", overflow="fold")
    if wide:
        table.add_column("tz")
    table.add_column("next run", no_wrap=True)
    table.add_column("last run", no_wrap=True)
    if wide:
        table.add_column("last ok", no_wrap=True)
        table.add_column("last skip", no_wrap=True)
    for s in statuses:
        status = _STATUS_STYLE.get(s.last_status or "", s.last_status or "")
        last = f"{_short(s.last_run, now)} {status}".strip() if s.last_run else "—"
        name = s.name if s.enabled else f"[dim]{s.name}[/dim] [red](off)[/red]"
        row = [name] + ([s.schedule or "—"] if wide else []) + [s.schedule_words]
        row += [s.timezone] if wide else []
        row += [_short(s.next_run, now), last]
        row += [_short(s.last_success, now), _short(s.last_skip, now)] if wide else []
        table.add_row(*row)
    console.print(table)


_STATUS_STYLE = {
    "succeeded": "[green]ok[/green]",
    "failed": "[red]failed[/red]",
    "skipped": "[yellow]skipped[/yellow]",
    "running": "[cyan]running[/cyan]",
    "canceled": "[magenta]canceled[/magenta]",
}


def _short(value: dt.datetime | None, now: dt.datetime) -> str:
    """Today's times as HH:MM:SS, other days as MM-DD HH:MM: fits an 80-column terminal."""
    if value is None:
        return "—"
    if value.date() == now.date():
        return value.strftime("%H:%M:%S")
    return value.strftime("%m-%d %H:%M")


@app.command()
@handles_errors
def history(
    name: str,
    limit: Annotated[int, typer.Option(min=1, max=1000, envvar="TICKWORK_HISTORY_LIMIT")] = 20,
    failures: Annotated[bool, typer.Option("--failures", help="Only failed runs.")] = False,
) -> None:
    """Show a job's recent runs."""
    from admin.job_status import run_history

    runs = run_history(_db(), name, limit=limit, failures_only=failures)
    table = Table(title=f"runs of {name}")
    for column in (
        "id",
        "slot",
        "trigger",
        "status",
        "started",
        "finished",
        "records",
        "output / error",
    ):
        table.add_column(column, overflow="fold")
    for r in runs:
        detail = (r.error or r.skip_reason or r.output or "").strip().splitlines()
        table.add_row(
            str(r.id),
            _when(r.scheduled_for),
            r.trigger,
            r.status,
            _when(r.started_at),
            _when(r.finished_at),
            str(r.records_processed),
            detail[-1] if detail else "",
        )
    Console().print(table)


@app.command()
@handles_errors
def trigger(name: str) -> None:
    """Run a job now (queued; runs as soon as a worker is free)."""
    from workers.scheduler import control

    db = _db()
    run_id = control.trigger(db, _broker(db), name)
    typer.echo(f"queued run {run_id} of {name}")


@app.command()
@handles_errors
def enable(name: str) -> None:
    """Enable a job."""
    from workers.scheduler import control

    control.set_enabled(_db(), name, True)
    typer.echo(f"{name} enabled")


@app.command()
@handles_errors
def disable(name: str) -> None:
    """Disable a job: it is no longer dispatched on its schedule."""
    from workers.scheduler import control

    control.set_enabled(_db(), name, False)
    typer.echo(f"{name} disabled")


@app.command("set-schedule")
@handles_errors
def set_schedule(
    name: str,
    times: Annotated[str | None, typer.Option(help="Daily times HH:MM[:SS],...")] = None,
    interval: Annotated[
        str | None, typer.Option(help="Interval MM:SS, HH:MM:SS or '10 minutes'")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Back to the default schedule.")] = False,
) -> None:
    """Override a job's schedule with daily times or an interval (not both)."""
    from tickwork.errors import ScheduleError
    from workers.scheduler import control

    if clear and (times or interval):
        raise ScheduleError("--clear cannot be combined with --times or --interval")
    if not clear and not times and not interval:
        raise ScheduleError("give --times, --interval or --clear")
    control.set_schedule_override(_db(), name, times=times, interval=interval)
    typer.echo(f"{name}: " + ("default schedule restored" if clear else "override saved"))


class OnOff(StrEnum):
    on = "on"
    off = "off"


@app.command("notify-on-success")
@handles_errors
def notify_on_success(name: str, value: OnOff) -> None:
    """E-mail successful runs that produced output (failures are always e-mailed)."""
    from workers.scheduler import control

    control.set_notify_on_success(_db(), name, value is OnOff.on)
    typer.echo(f"{name}: notify on success {value.value}")


@handles_errors
def hold() -> None:
    """Hold all jobs (maintenance): nothing is dispatched until release."""
    from workers.scheduler import control

    control.hold(_db())
    typer.echo("all jobs held")


@handles_errors
def release(
    run_missed: Annotated[
        bool, typer.Option("--run-missed", help="Run each missed job once.")
    ] = False,
    reschedule: Annotated[
        bool, typer.Option("--reschedule", help="Drop missed slots; count from now.")
    ] = False,
) -> None:
    """Release held jobs: choose --run-missed or --reschedule."""
    from tickwork.errors import TickworkError
    from workers.scheduler import control

    if run_missed == reschedule:
        raise TickworkError("choose exactly one of --run-missed or --reschedule")
    db = _db()
    queued = control.release(db, _broker(db), "run-missed" if run_missed else "reschedule")
    typer.echo("released" + (f"; queued missed runs of: {', '.join(queued)}" if queued else ""))
