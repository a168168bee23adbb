"""``tickwork jobs ...``, ``tickwork hold`` and ``tickwork release``.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.text import Text

from admin.cli import output
from admin.cli.common import (
    closest,
    handles_errors,
    open_database,
    settings,
    usage_error,
)
from admin.cli.output import Column, Format

if TYPE_CHECKING:
    from admin.job_status import JobStatus
    from schema.engine import Database
    from schema.scheduling import JobRun

app = typer.Typer(help="List, inspect and control scheduled jobs.", invoke_without_command=True)

#: Where ``tickwork jobs --format X <sub-command>`` leaves X for the sub-command.
_FORMAT_KEY = "tickwork.jobs.format"
# A sub-command's --format: when not given, that of `tickwork jobs` (the group's).
InheritedFormat = Annotated[
    Format | None,
    typer.Option("--format", "-f", help=output.FORMAT_HELP + " Default: that of `tickwork jobs`."),
]
#: The sub-commands that list (and so take the group's --format).
_LISTINGS = ("history", "run")


def _job_names() -> list[str]:
    from workers.app import import_job_modules
    from workers.registry import all_jobs

    import_job_modules(settings())  # built-in jobs and TICKWORK_JOB_MODULES
    return sorted(all_jobs())


def _known(name: str) -> str:
    """``name`` if it is a registered job; otherwise an error naming the closest one."""
    from tickwork.errors import UnknownJobError

    names = _job_names()
    if name in names:
        return name
    close = closest(name, names)
    hint = f"; did you mean {close}?" if close else " (list them with `tickwork jobs`)"
    raise UnknownJobError(f"unknown job {name!r}{hint}")


def _complete_job(incomplete: str) -> list[str]:
    """Shell completion of job names."""
    try:
        return [n for n in _job_names() if n.startswith(incomplete)]
    except Exception:  # a broken setting must not break the shell
        return []


def _db() -> Database:
    """The database (created and migrated on first use in embedded mode), jobs imported."""
    config = settings()
    from workers.app import import_job_modules

    import_job_modules(config)
    return open_database(config)


def _broker(db: Database) -> Any:
    """The broker that starts runs from this process, or None in the embedded mode: the
    running `tickwork run` sends them (its outbox); none running is an error, said
    before anything is recorded."""
    from admin.run_handoff import runs_broker
    from workers.app import build_runtime

    if db.settings.embedded_broker:
        return runs_broker(db.settings, None)
    return runs_broker(db.settings, build_runtime(db.settings, db).broker)


JobName = Annotated[
    str, typer.Argument(help="A job's name (see `tickwork jobs`).", autocompletion=_complete_job)
]

_JOB_COLUMNS = [
    Column("job", "job", wrap=False),
    Column("schedule", "schedule"),
    Column("next", "next run", min_width=12),
    Column("last", "last run", min_width=12),
    Column("ok", "last ok", min_width=12),
    Column("skip", "last skip", min_width=12),
]
_JOB_MARKDOWN = [
    Column("md_name", "Job Name"),
    Column("md_schedule", "Schedule"),
    Column("words", "Frequency"),
    Column("description", "Description"),
]


def _job_row(s: JobStatus, held: bool) -> dict[str, output.Cell]:
    name = Text(s.name)
    if not s.enabled:
        name.append("\ndisabled", style="red")
    schedule = s.schedule_words
    if s.schedule:
        schedule += f"\n{s.schedule} · {s.timezone}"
        if s.schedule_source != "default":
            schedule += f" · {s.schedule_source}"
    for entry in s.entries:
        args = ", ".join(f"{k}={v!r}" for k, v in entry["args"].items())
        schedule += f"\nentry {entry['name']}: {entry['schedule_words']}" + (
            f" ({args})" if args else ""
        )
    if s.then:
        schedule += f"\nthen → {', '.join(s.then)}"
    policies = [f"overlap {s.overlap}"] if s.overlap != "skip" else []
    if s.catchup != "skip":
        policies.append(f"catchup {s.catchup}")
    if s.interval_from == "last_start":
        policies.append("interval from the last start")
    if s.pause_after_failures:
        policies.append(
            f"pauses after {s.pause_after_failures} failures ({s.consecutive_failures} now)"
        )
    if policies:
        schedule += "\n" + " · ".join(policies)
    if s.disabled_reason and not s.enabled:
        name.append("\n(paused on failure)", style="red")
    if s.next_run is not None:
        next_run = output.when(s.next_run)
    elif held:
        next_run = "held"
    elif not s.enabled:
        next_run = "disabled"
    else:
        next_run = "on demand" if not s.schedule else output.NOTHING
    last = Text(output.when(s.last_run))
    if s.last_status:
        last.append("\n")
        last.append_text(output.status(s.last_status))
    return {
        "job": name,
        "schedule": schedule,
        "next": next_run,
        "last": last,
        "ok": output.when(s.last_success),
        "skip": output.when(s.last_skip),
        "md_name": f"`{s.name}`",
        "md_schedule": f"`{s.schedule}`" if s.schedule else "on demand",
        "words": s.schedule_words,
        "description": s.description,
    }


def _is_given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


@app.callback()
@handles_errors
def list_jobs(
    ctx: typer.Context,
    format: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            envvar="TICKWORK_JOBS_FORMAT",
            help=output.FORMAT_HELP + " Also applies to `jobs history`.",
        ),
    ] = Format.table,
) -> None:
    """List every job with its schedule in words, next run, last run/success/skip."""
    if ctx.invoked_subcommand is not None:
        if ctx.invoked_subcommand not in _LISTINGS and _is_given(ctx, "format"):
            raise usage_error(
                f"--format applies to `tickwork jobs` and `tickwork jobs history`, "
                f"not to `tickwork jobs {ctx.invoked_subcommand}`"
            )
        ctx.meta[_FORMAT_KEY] = format
        return
    from admin.job_status import hold_state, job_statuses

    db = _db()
    statuses = job_statuses(db)
    held, since = hold_state(db)
    if held:
        output.banner(
            f"HELD since {output.when(since)}: no job is dispatched until "
            "`tickwork release --run-missed` (or `--reschedule`)",
            stderr=format is not Format.table,  # stdout stays JSON / markdown
        )
    output.render(
        format,
        title="tickwork jobs",
        columns=_JOB_COLUMNS,
        markdown_columns=_JOB_MARKDOWN,
        rows=[_job_row(s, held) for s in statuses],
        data=[s.as_json() for s in statuses],
        empty="no jobs are registered",
    )


_RUN_COLUMNS = [
    Column("id", "run", wrap=False, justify="right"),
    Column("slot", "slot", min_width=12),
    Column("trigger", "trigger", wrap=False),
    Column("status", "status", wrap=False),
    Column("started", "started", min_width=12),
    Column("finished", "finished", min_width=12),
    Column("records", "records", wrap=False, justify="right"),
    Column("detail", "output / error (last line)"),
]


def _run_row(r: JobRun) -> dict[str, output.Cell]:
    detail = (r.error or r.skip_reason or r.output or "").strip().splitlines()
    trigger = r.trigger
    if r.entry:
        trigger += f"\nentry {r.entry}"
    if r.triggered_by is not None:
        trigger += f"\nafter run {r.triggered_by}"
    return {
        "id": str(r.id),
        "slot": output.when(r.scheduled_for, "manual" if r.trigger == "manual" else "—"),
        "trigger": trigger,
        "status": output.status(r.status),
        "started": output.when(r.started_at),
        "finished": output.when(r.finished_at),
        "records": str(r.records_processed),
        "detail": detail[-1] if detail else "",
    }


def _run_json(r: JobRun) -> dict[str, Any]:
    return {
        "id": r.id,
        "job_name": r.job_name,
        "scheduled_for": output.iso(r.scheduled_for),
        "trigger": r.trigger,
        "status": r.status,
        "queued_at": output.iso(r.queued_at),
        "started_at": output.iso(r.started_at),
        "finished_at": output.iso(r.finished_at),
        "attempts": r.attempts,
        "records_processed": r.records_processed,
        "output": r.output,
        "error": r.error,
        "skip_reason": r.skip_reason,
        "worker": r.worker,
        "entry": r.entry,
        "args": r.kwargs,
        "triggered_by": r.triggered_by,
    }


@app.command()
@handles_errors
def history(
    ctx: typer.Context,
    name: JobName,
    limit: Annotated[
        int,
        typer.Option(min=1, max=1000, envvar="TICKWORK_HISTORY_LIMIT", help="Newest runs shown."),
    ] = 20,
    failures: Annotated[bool, typer.Option("--failures", help="Only failed runs.")] = False,
    format: InheritedFormat = None,
) -> None:
    """Show a job's recent runs, newest first."""
    from admin.job_status import run_history

    chosen = format or ctx.meta.get(_FORMAT_KEY) or Format.table
    name = _known(name)
    runs = run_history(_db(), name, limit=limit, failures_only=failures)
    output.render(
        chosen,
        title=f"{'failed ' if failures else ''}runs of {name}, newest first (at most {limit})",
        columns=_RUN_COLUMNS,
        rows=[_run_row(r) for r in runs],
        data=[_run_json(r) for r in runs],
        empty=f"no {'failed ' if failures else ''}runs of {name} yet",
    )


@app.command()
@handles_errors
def trigger(
    name: JobName,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            envvar="TICKWORK_TRIGGER_FORCE",
            help="Run it even while a run of the job is queued or running (alongside it).",
        ),
    ] = False,
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            help="A keyword argument for the job, key=value (repeatable). The value is read "
            'as JSON when it is JSON (3, true, [1,2], "3"), else as text.',
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            envvar="TICKWORK_TRIGGER_IDEMPOTENCY_KEY",
            help="The same key again prints the run the first call queued, queues nothing.",
        ),
    ] = None,
) -> None:
    """Run a job now: sent at once (no jitter), it starts as soon as a worker is free.

    While a run of the job is queued or running this is refused (exit 1), naming that
    run, unless --force. In the embedded mode the running `tickwork run` starts it.
    Arguments are checked against the job's parameters before anything is queued.
    """
    from schema.audit import cli_actor
    from tickwork.errors import ValidationError
    from workers.registry import check_arguments, get_job
    from workers.scheduler import control

    kwargs = _parse_args(arg or [])
    name = _known(name)
    db = _db()
    try:  # a bad argument is a usage error, said before anything else happens
        check_arguments(name, get_job(name).fn, kwargs)
    except ValidationError as exc:
        raise usage_error(str(exc)) from None
    broker = _broker(db)
    run_id = control.trigger(
        db,
        broker,
        name,
        force=force,
        kwargs=kwargs,
        idempotency_key=idempotency_key,
        actor=cli_actor(),
    )
    by = "the running `tickwork run` starts it within a second" if broker is None else "sent"
    typer.echo(f"queued run {run_id} of {name} ({by})")


@app.command()
@handles_errors
def enable(name: JobName) -> None:
    """Enable a job."""
    from schema.audit import cli_actor
    from workers.scheduler import control

    name = _known(name)
    control.set_enabled(_db(), name, True, actor=cli_actor())
    typer.echo(f"{name} enabled")


@app.command()
@handles_errors
def disable(name: JobName) -> None:
    """Disable a job: it is no longer dispatched on its schedule."""
    from schema.audit import cli_actor
    from workers.scheduler import control

    name = _known(name)
    control.set_enabled(_db(), name, False, actor=cli_actor())
    typer.echo(f"{name} disabled")


@app.command("set-schedule")
@handles_errors
def set_schedule(
    name: JobName,
    times: Annotated[str | None, typer.Option(help="Daily times HH:MM[:SS],...")] = None,
    interval: Annotated[
        str | None, typer.Option(help="Interval MM:SS, HH:MM:SS or '10 minutes'")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Back to the default schedule.")] = False,
) -> None:
    """Override a job's schedule with daily times or an interval (not both)."""
    from schema.audit import cli_actor
    from workers.scheduler import control

    if clear and (times or interval):
        raise usage_error("--clear cannot be combined with --times or --interval")
    if not clear and not times and not interval:
        raise usage_error("give --times, --interval or --clear")
    if times and interval:
        raise usage_error("give --times or --interval, not both")
    name = _known(name)
    control.set_schedule_override(_db(), name, times=times, interval=interval, actor=cli_actor())
    typer.echo(f"{name}: " + ("default schedule restored" if clear else "override saved"))


class OnOff(StrEnum):
    on = "on"
    off = "off"


@app.command("notify-on-success")
@handles_errors
def notify_on_success(
    name: JobName, value: Annotated[OnOff, typer.Argument(help="on or off.")]
) -> None:
    """E-mail successful runs that produced output (failures are always e-mailed)."""
    from schema.audit import cli_actor
    from workers.scheduler import control

    name = _known(name)
    control.set_notify_on_success(_db(), name, value is OnOff.on, actor=cli_actor())
    typer.echo(f"{name}: notify on success {value.value}")


@handles_errors
def hold() -> None:
    """Hold all jobs (maintenance): nothing is dispatched until release."""
    from admin.job_status import hold_state
    from schema.audit import cli_actor
    from workers.scheduler import control

    db = _db()
    held, since = hold_state(db)
    if held:
        typer.echo(f"already held since {output.when(since)}; nothing changed")
        return
    control.hold(db, actor=cli_actor())
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
    from admin.job_status import hold_state
    from schema.audit import cli_actor
    from workers.scheduler import control

    if run_missed == reschedule:
        raise usage_error("choose exactly one of --run-missed or --reschedule")
    db = _db()
    held, _since = hold_state(db)
    if not held:
        typer.echo("nothing is held; nothing to release")
        return
    # --reschedule starts nothing, so it needs no running system.
    broker = _broker(db) if run_missed else None
    mode: Literal["run-missed", "reschedule"] = "run-missed" if run_missed else "reschedule"
    queued = control.release(db, broker, mode, actor=cli_actor())
    typer.echo("released" + (f"; queued missed runs of: {', '.join(queued)}" if queued else ""))


def _parse_args(pairs: list[str]) -> dict[str, Any]:
    """``--arg key=value`` pairs; a value that parses as JSON is that value, else text."""
    import json

    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise usage_error(f"--arg {pair!r}: write key=value, key a parameter name")
        if key in kwargs:
            raise usage_error(f"--arg {key}: given twice")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return kwargs


def _moment(value: str, option: str) -> Any:
    """An ISO 8601 moment with a time zone (Z or +01:00), for --from / --to."""
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise usage_error(f"{option} {value!r}: not an ISO 8601 time (2026-11-30T08:00Z)") from None
    if moment.tzinfo is None:
        raise usage_error(f"{option} {value!r}: give a time zone (Z, or +01:00)")
    return moment


@app.command()
@handles_errors
def backfill(
    name: JobName,
    start: Annotated[
        str, typer.Option("--from", help="Start, exclusive: ISO 8601 with a zone (…Z).")
    ],
    end: Annotated[str, typer.Option("--to", help="End, inclusive: ISO 8601 with a zone.")],
    max_runs: Annotated[
        int | None,
        typer.Option(
            "--max",
            min=1,
            max=100_000,
            help="Queue up to this many runs (default TICKWORK_BACKFILL_MAX_RUNS); more "
            "slots than this is refused, queueing nothing.",
        ),
    ] = None,
    entry: Annotated[
        str | None, typer.Option("--entry", help="Only this schedule entry of the job.")
    ] = None,
) -> None:
    """Queue one run per slot of the job's schedule due in (FROM, TO] that has no run yet
    (recorded as trigger `backfill`); a slot that already ran is never run again."""
    from tickwork.errors import ValidationError
    from workers.scheduler.workflows import backfill as queue_backfill

    begin, finish = _moment(start, "--from"), _moment(end, "--to")
    name = _known(name)
    db = _db()
    broker = _broker(db)
    try:
        queued = queue_backfill(db, broker, name, begin, finish, max_runs=max_runs, entry=entry)
    except ValidationError as exc:
        raise usage_error(str(exc)) from None
    typer.echo(
        f"queued {len(queued)} backfill run(s) of {name}"
        + (f": {', '.join(map(str, queued))}" if queued else " (every slot already has a run)")
    )


@app.command("run")
@handles_errors
def show_run(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(min=1, help="A run id (see `jobs history`).")],
    format: InheritedFormat = None,
) -> None:
    """Show a run with its chain: the run that queued it and the runs it queued."""
    from tickwork.errors import TickworkError
    from workers.scheduler.workflows import chain_of

    chosen = format or ctx.meta.get(_FORMAT_KEY) or Format.table
    db = _db()
    with db.session() as session:
        from schema.scheduling import JobRun

        run = session.get(JobRun, run_id)
    if run is None:
        raise TickworkError(f"no run {run_id}")
    parent, children = chain_of(db, run_id)
    shown = [r for r in (parent, run, *children) if r is not None]
    role = {r.id: "queued it" for r in ([parent] if parent else [])}
    role.update({run.id: "this run"})
    role.update({c.id: "queued by it" for c in children})
    rows = []
    for r in shown:
        row = _run_row(r)
        row["id"] = f"{r.id}\n{r.job_name}\n{role[r.id]}"
        rows.append(row)
    output.render(
        chosen,
        title=f"run {run_id} of {run.job_name} and its chain",
        columns=_RUN_COLUMNS,
        rows=rows,
        data=[{**_run_json(r), "role": role[r.id]} for r in shown],
        empty="",
    )
