"""``tickwork``: run the system, its processes, migrations and checks.

Every option has an environment-variable twin (shown in ``--help``); the settings
themselves are documented in the README's configuration table.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from admin.cli import api_tokens as api_tokens_cli
from admin.cli import jobs as jobs_cli
from admin.cli import probe as probe_cli
from admin.cli import schedule as schedule_cli
from admin.cli.common import fail, handles_errors, set_overrides, settings, setup_logging
from tickwork.errors import ConfigError

app = typer.Typer(
    name="tickwork",
    help="Background jobs and scheduled maintenance on Dramatiq + RabbitMQ.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(jobs_cli.app, name="jobs")
app.add_typer(schedule_cli.app, name="schedule")
app.add_typer(probe_cli.app, name="probe")
app.add_typer(api_tokens_cli.app, name="api-token")
app.command("hold")(jobs_cli.hold)
app.command("release")(jobs_cli.release)


@app.callback()
def _global(
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
        database_url=database_url, broker_url=broker_url, data_dir=data_dir, log_level=log_level
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
def check() -> None:
    """Check settings, database (reachable, at head), broker, and job schedules."""
    from admin.checks import run_checks

    ok = run_checks(settings(), typer.echo)
    raise typer.Exit(0 if ok else 1)


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
    from admin.embedded import EmbeddedSystem

    config = settings()
    if threads is not None:
        config = config.model_copy(update={"worker_threads": threads})
    setup_logging(config.log_level)
    system = EmbeddedSystem(config)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    system.start()
    typer.echo(system.banner(), err=True)
    stop.wait()
    typer.echo("stopping: waiting for running jobs to finish...", err=True)
    system.stop()
    typer.echo("stopped", err=True)


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
    # Before anything imports prometheus_client: the forked workers inherit this.
    from workers.metrics.multiprocess import configure_multiprocess

    metrics_dir = configure_multiprocess("worker", config.metrics_dir)
    import dramatiq.cli

    args = dramatiq.cli.make_argument_parser().parse_args(  # type: ignore[no-untyped-call]
        [
            "workers.app:setup",
            "--processes",
            str(config.worker_processes),
            "--threads",
            str(config.worker_threads),
            "--worker-shutdown-timeout",
            str(config.worker_shutdown_timeout_s * 1000),
            "--queues",
            *[config.queue(q) for q in wanted],
            *(["--verbose"] if config.log_level == "DEBUG" else []),
        ]
    )
    code = dramatiq.cli.main(args)  # type: ignore[no-untyped-call]
    import shutil

    shutil.rmtree(metrics_dir, ignore_errors=True)  # a clean stop leaves no metric files
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
    setup_logging(config.log_level)
    from producers.ticker import run_periodiq
    from workers.app import build_runtime

    runtime = build_runtime(config)
    if config.metrics_port:
        from workers.metrics.exposition import build_registry, start_metrics_server

        registry = build_registry(config, runtime.db, runtime.broker)
        try:
            start_metrics_server(config, registry)
        except OSError as exc:
            # Ticks matter more than metrics: say so loudly, but keep scheduling.
            typer.echo(
                f"error: TICKWORK_METRICS_PORT: cannot listen on {config.metrics_host}:"
                f"{config.metrics_port} ({exc}); metrics are NOT served",
                err=True,
            )
    import threading

    from workers.heartbeat import Heartbeat

    # Liveness: the scheduler beats while its periodiq loop (the main thread) runs.
    Heartbeat(
        config.heartbeat_file, config.heartbeat_interval_s, threading.main_thread().is_alive
    ).start()
    run_periodiq(runtime.broker, runtime.settings)


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
    import uvicorn

    from admin.api import create_app
    from workers.app import build_runtime

    config = settings()
    setup_logging(config.log_level)
    runtime = build_runtime(config)
    app_ = create_app(config, runtime.db, runtime.broker)
    uvicorn.run(app_, host=host or config.api_host, port=port or config.api_port, log_level="info")


def _export(config_overrides: bool) -> None:
    """Make CLI overrides visible to child processes (Dramatiq forks workers)."""
    from admin.cli.common import _overrides

    for key, value in _overrides.items():
        os.environ[f"TICKWORK_{key.upper()}"] = str(value)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
