"""``tickwork``: run the system, its processes, migrations and checks.

Every option has an environment-variable twin (shown in ``--help``); the settings
themselves are documented in the README's configuration table.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from admin.cli import api_tokens as api_tokens_cli
from admin.cli import audit as audit_cli
from admin.cli import dead_letters as dead_letters_cli
from admin.cli import jobs as jobs_cli
from admin.cli import output
from admin.cli import probe as probe_cli
from admin.cli import queues as queues_cli
from admin.cli import runs as runs_cli
from admin.cli import schedule as schedule_cli
from admin.cli.common import (
    EXIT_CODES,
    TickworkGroup,
    cli_env_twins,
    fail,
    handles_errors,
    register_app,
    set_flags,
    set_overrides,
    settings,
    setup_logging,
)
from tickwork import sd_notify
from tickwork.errors import ConfigError
from tickwork.settings import Settings, accept_env_twins

if TYPE_CHECKING:
    import socket

    import uvicorn

    from schema.engine import Database

app = typer.Typer(
    name="tickwork",
    cls=TickworkGroup,
    help="Background jobs and scheduled maintenance on Dramatiq + RabbitMQ.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
app.add_typer(jobs_cli.app, name="jobs")
app.add_typer(schedule_cli.app, name="schedule")
app.add_typer(probe_cli.app, name="probe")
app.add_typer(api_tokens_cli.app, name="api-token")
app.add_typer(dead_letters_cli.app, name="dead-letters")
app.add_typer(runs_cli.app, name="runs")
app.command("audit")(audit_cli.audit)
app.add_typer(queues_cli.app, name="queues")
app.command("hold")(jobs_cli.hold)
app.command("release")(jobs_cli.release)
register_app(app)
# Options' environment twins (TICKWORK_JOBS_FORMAT, ...) are accepted beside the settings.
accept_env_twins(lambda: cli_env_twins())


def _version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"tickwork {version('tickwork')}")
    except PackageNotFoundError:
        typer.echo("tickwork (version unknown: not installed; run `pip install -e .`)")
    raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    database_url: Annotated[
        str | None, typer.Option(envvar="TICKWORK_DATABASE_URL", help="Database URL.")
    ] = None,
    broker_url: Annotated[
        str | None,
        typer.Option(envvar="TICKWORK_BROKER_URL", help="amqp:// URL; unset: in-process."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(envvar="TICKWORK_DATA_DIR", help="Embedded mode data directory.")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(envvar="TICKWORK_LOG_LEVEL", help="DEBUG, INFO, WARNING, ERROR.")
    ] = None,
) -> None:
    set_overrides(
        database_url=database_url,
        broker_url=broker_url,
        data_dir=data_dir,
        log_level=log_level.upper() if log_level else None,
    )
    given = ("database_url", "broker_url", "data_dir", "log_level")
    set_flags(
        {
            name
            for name in given
            if (source := ctx.get_parameter_source(name)) is not None
            and source.name == "COMMANDLINE"
        }
    )


@app.command()
@handles_errors
def migrate() -> None:
    """Apply database migrations (safe to run again)."""
    from schema import migrate as migrations
    from schema.engine import Database

    config = settings()
    setup_logging(config.log_level)
    db = Database(config)
    before = migrations.current_revision(db.engine)
    migrations.upgrade(db.engine)
    after = migrations.current_revision(db.engine)
    typer.echo(f"database at revision {after}" + ("" if before == after else f" (was {before})"))


@app.command()
@handles_errors
def check(
    format: Annotated[
        output.Format, typer.Option("--format", "-f", help=output.FORMAT_HELP)
    ] = output.Format.table,
) -> None:
    """Check settings, database (reachable, at head), broker, and job schedules.

    Exit 0 if every check passed, 1 if one failed.
    """
    from admin.checks import collect_checks
    from admin.cli.common import open_database

    results = collect_checks(settings(), open_database)
    output.render(
        format,
        title="tickwork check",
        columns=[
            output.Column("result", "result", wrap=False),
            output.Column("check", "check", wrap=False),
            output.Column("detail", "detail"),
        ],
        rows=[
            {"result": output.passed(r.ok), "check": r.name, "detail": r.detail} for r in results
        ],
        data=[{"check": r.name, "ok": r.ok, "detail": r.detail} for r in results],
    )
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


@app.command("settings")
@handles_errors
def settings_command(
    format: Annotated[
        output.Format, typer.Option("--format", "-f", help=output.FORMAT_HELP)
    ] = output.Format.table,
) -> None:
    """Every setting: its value now, where it came from (env, flag or default), its default.

    Also the environment twins of command options (e.g. TICKWORK_JOBS_FORMAT). Secrets are
    masked. A variable that is unknown or malformed is listed, then named on stderr (exit 2).
    """
    from admin.cli.common import settings_report

    report = settings_report()
    output.render(
        format,
        title="tickwork settings",
        columns=[
            output.Column("variable", "variable", wrap=False),
            output.Column("value", "value"),
            output.Column("from", "from"),
        ],
        markdown_columns=[
            output.Column("variable", "variable"),
            output.Column("value", "value"),
            output.Column("source", "from"),
            output.Column("default", "default"),
            output.Column("meaning", "meaning"),
        ],
        rows=[row.cells() for row in report.rows],
        data=[row.as_json() for row in report.rows],
    )
    for problem in report.problems:
        typer.echo(f"error: {problem}", err=True)
    raise typer.Exit(2 if report.problems else 0)


@app.command()
def keygen() -> None:
    """Print a new Fernet key for TICKWORK_FERNET_KEY."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


@app.command()
@handles_errors
def run(
    threads: Annotated[
        int | None, typer.Option(envvar="TICKWORK_WORKER_THREADS", help="Worker threads.")
    ] = None,
) -> None:
    """Embedded mode: migrate, then worker threads + scheduler (+ admin API) in one process.

    Ctrl-C stops cleanly: no new messages are taken, running jobs finish.
    """
    import logging

    from admin.embedded import EmbeddedSystem

    config = settings()
    if threads is not None:
        config = config.model_copy(update={"worker_threads": threads})
    setup_logging(config.log_level, role="run", fmt=config.log_format)
    log = logging.getLogger("tickwork.cli")
    system = EmbeddedSystem(config)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    system.start()
    log.info("%s", system.banner())
    stop.wait()
    log.info("stopping: waiting for running jobs to finish...")
    system.stop()
    log.info("tickwork run stopped")


@app.command()
@handles_errors
def worker(
    processes: Annotated[
        int | None, typer.Option(envvar="TICKWORK_WORKER_PROCESSES", help="Worker processes.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(envvar="TICKWORK_WORKER_THREADS", help="Threads per process.")
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(envvar="TICKWORK_WORKER_QUEUES", help="Comma-separated logical queues."),
    ] = None,
    shutdown_timeout_s: Annotated[
        int | None,
        typer.Option(envvar="TICKWORK_WORKER_SHUTDOWN_TIMEOUT_S", help="SIGTERM grace, seconds."),
    ] = None,
) -> None:
    """Run Dramatiq worker processes on RabbitMQ."""
    config = settings()
    if config.embedded_broker:
        raise ConfigError(
            "TICKWORK_BROKER_URL: `tickwork worker` needs RabbitMQ (amqp://...); "
            "use `tickwork run` for the embedded mode"
        )
    from tickwork import queues as queue_names

    wanted = [q.strip() for q in (queues or ",".join(queue_names.ALL)).split(",") if q.strip()]
    unknown = [q for q in wanted if q not in queue_names.ALL]
    if unknown:
        raise fail(
            f"--queues: unknown queue {unknown[0]!r} (known: {', '.join(queue_names.ALL)})", 2
        )
    config = config.model_copy(
        update={
            k: v
            for k, v in {
                "worker_processes": processes,
                "worker_threads": threads,
                "worker_shutdown_timeout_s": shutdown_timeout_s,
            }.items()
            if v is not None
        }
    )
    _export(config_overrides=True)
    import logging

    # Dramatiq's main process and (inherited, then again in workers.app:setup) its
    # worker processes log in tickwork's format; Dramatiq configures nothing itself.
    setup_logging(config.log_level, role="worker", fmt=config.log_format)
    log = logging.getLogger("tickwork.cli")
    # Before anything imports prometheus_client: the forked workers inherit this.
    from workers.metrics.multiprocess import configure_multiprocess

    metrics_dir = configure_multiprocess("worker", config.metrics_dir)
    _check_jobs_and_overrides(config)
    import dramatiq.cli

    from workers.metrics.exposition import metrics_port

    args = dramatiq.cli.make_argument_parser().parse_args(  # type: ignore[no-untyped-call]
        [
            "workers.app:setup",
            "--processes",
            str(config.worker_processes),
            "--threads",
            str(config.worker_threads),
            "--worker-shutdown-timeout",
            str(config.worker_shutdown_timeout_s * 1000),
            "--skip-logging",
            "--queues",
            *[config.queue(q) for q in wanted],
            *(["--verbose"] if config.log_level == "DEBUG" else []),
        ]
    )
    port = metrics_port(config, "worker")
    # systemd (deploy/systemd/tickwork-worker@.service) watches this process, but the
    # Dramatiq worker processes it forks are the ones that consume and beat: they send
    # READY=1 once consuming, WATCHDOG=1 with each heartbeat and STOPPING=1 on SIGTERM
    # (workers/heartbeat.py; the unit says NotifyAccess=all). Hand them the watchdog.
    if sd_notify.delegate_watchdog():
        log.debug("systemd watchdog handed to the worker processes")
    log.info(
        "tickwork worker: %d process(es) x %d threads on queues %s; metrics %s",
        config.worker_processes,
        config.worker_threads,
        ", ".join(config.queue(q) for q in wanted),
        f"on http://{config.metrics_host}:{port}/metrics"
        if port
        else "endpoint off (TICKWORK_METRICS_PORT=0)",
    )
    code = dramatiq.cli.main(args)  # type: ignore[no-untyped-call]
    import shutil

    shutil.rmtree(metrics_dir, ignore_errors=True)  # a clean stop leaves no metric files
    if code == 0:
        log.info("tickwork worker stopped")
    else:
        log.error("tickwork worker stopped: a worker process exited with code %s", code)
    sys.exit(code)


@app.command()
@handles_errors
def scheduler() -> None:
    """Publish the tick every minute with periodiq (run exactly one)."""
    config = settings()
    if config.embedded_broker:
        raise ConfigError(
            "TICKWORK_BROKER_URL: `tickwork scheduler` needs RabbitMQ (amqp://...); "
            "use `tickwork run` for the embedded mode"
        )
    os.environ["TZ"] = "UTC"  # periodiq uses local time
    import time

    time.tzset()
    import logging

    setup_logging(config.log_level, role="scheduler", fmt=config.log_format)
    log = logging.getLogger("tickwork.cli")
    from producers.ticker import run_periodiq
    from workers.app import build_runtime
    from workers.metrics.exposition import metrics_port

    # The worker runtime serves the scheduler's metrics (queue depths, run gauges); building
    # it imports every job module, so only the overrides are left to check.
    runtime = build_runtime(config)
    _check_jobs_and_overrides(config, runtime.db)
    port = metrics_port(config, "scheduler")
    if port:
        from workers.metrics.exposition import build_registry, start_metrics_server

        registry = build_registry(config, runtime.db, runtime.broker)
        try:
            start_metrics_server(config, registry, role="scheduler")
        except OSError as exc:
            # Ticks matter more than metrics: say so loudly, but keep scheduling.
            log.error(
                "TICKWORK_METRICS_PORT: cannot listen on %s:%d (%s); metrics are NOT served",
                config.metrics_host,
                port,
                exc,
            )
    else:
        log.info("metrics endpoint off (TICKWORK_METRICS_PORT=0)")
    import threading

    from workers.heartbeat import Heartbeat, heartbeat_path

    # Liveness: the scheduler beats while its periodiq loop (the main thread) runs.
    beat_file = heartbeat_path(config, "scheduler")
    heartbeat = Heartbeat(beat_file, config.heartbeat_interval_s, threading.main_thread().is_alive)
    heartbeat.start()
    log.info("liveness heartbeat: %s, every %g s", beat_file, config.heartbeat_interval_s)
    # systemd (Type=notify): ready now -- periodiq schedules the first tick at once; the
    # heartbeat sends WATCHDOG=1.
    sd_notify.ready("publishing the tick every minute")
    try:
        stopped_by = run_periodiq(runtime.broker, runtime.settings)  # until SIGTERM or SIGINT
    finally:
        sd_notify.stopping()
        heartbeat.stop()
        runtime.broker.close()
        runtime.db.dispose()
    log.info("scheduler stopped (%s)", stopped_by)


@app.command()
@handles_errors
def api(
    host: Annotated[
        str | None, typer.Option(envvar="TICKWORK_API_HOST", help="Listen address.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(envvar="TICKWORK_API_PORT", min=1, max=65535, help="Port.")
    ] = None,
) -> None:
    """Serve the admin API and web page (uvicorn)."""
    import logging

    import uvicorn

    from admin.api import create_app
    from workers.app import build_runtime

    config = settings()
    setup_logging(config.log_level, role="api", fmt=config.log_format)
    log = logging.getLogger("tickwork.cli")
    runtime = build_runtime(config)
    app_ = create_app(config, runtime.db, runtime.broker, workers_in_process=False)
    from admin.embedded import listen_socket

    where = (host or config.api_host, port or config.api_port)
    try:
        sock = listen_socket(*where)
    except OSError as exc:
        raise ConfigError(
            f"TICKWORK_API_PORT: cannot listen on {where[0]}:{where[1]} "
            f"({exc.strerror or exc}); choose another port (or --port)"
        ) from None
    # log_config=None: uvicorn's loggers go to tickwork's handler, in its format.
    server = _notifying_server(
        uvicorn.Config(app_, host=where[0], port=where[1], log_level="info", log_config=None),
        config.heartbeat_interval_s,
    )

    def _stop(signum: int, _frame: object) -> None:
        # uvicorn handles SIGTERM/SIGINT while it serves, then raises the signal again to
        # die by it (exit 143); once it has stopped cleanly, that second one lands here.
        server.should_exit = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    log.info("admin API, web page and /metrics on http://%s:%d/", *where)
    server.run(sockets=[sock])
    runtime.broker.close()
    runtime.db.dispose()
    log.info("api stopped")


def _notifying_server(config: uvicorn.Config, watchdog_s: float) -> uvicorn.Server:
    """A uvicorn server that keeps systemd informed (Type=notify; a no-op elsewhere):
    READY=1 once it listens, WATCHDOG=1 every ``watchdog_s`` from its event loop (a loop
    that hangs stops answering requests *and* the watchdog), STOPPING=1 when it begins to
    shut down (SIGTERM)."""
    import time

    import uvicorn

    class NotifyingServer(uvicorn.Server):
        last_watchdog = 0.0

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                sd_notify.ready("serving the admin API")

        async def on_tick(self, counter: int) -> bool:  # every 0.1 s, on the event loop
            now = time.monotonic()
            if now - self.last_watchdog >= watchdog_s:
                self.last_watchdog = now
                sd_notify.watchdog()
            return await super().on_tick(counter)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            sd_notify.stopping()
            await super().shutdown(sockets)

    return NotifyingServer(config)


def _check_jobs_and_overrides(config: Settings, db: Database | None = None) -> None:
    """Start-up refuses what would otherwise fail quietly later: a job module that does
    not import or a schedule that does not parse (``@job`` refuses it, naming the job),
    and a schedule override in the database naming a job no module declares. ``db``: the
    process's own handle, when it has one (else one is opened for the check)."""
    from schema.engine import Database
    from workers.app import import_job_modules
    from workers.registry import all_jobs, check_chains
    from workers.scheduler.effective import check_overrides_name_known_jobs

    import_job_modules(config)
    check_chains(all_jobs())  # a chain to an unknown job, or a cycle
    handle = db or Database(config)
    try:
        check_overrides_name_known_jobs(handle, all_jobs())
    finally:
        if db is None:
            handle.dispose()


def _export(config_overrides: bool) -> None:
    """Make CLI overrides visible to child processes (Dramatiq forks workers)."""
    from admin.cli.common import _overrides

    for key, value in _overrides.items():
        os.environ[f"TICKWORK_{key.upper()}"] = str(value)


def main() -> None:
    # One name however it is started (also `python -m admin.cli.main`): usage lines
    # and shell completion (_TICKWORK_COMPLETE) both use it.
    app(prog_name="tickwork")


if __name__ == "__main__":
    main()
