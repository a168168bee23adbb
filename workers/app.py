"""The composition root: the one place that puts a worker process together.

It lists the job modules, builds settings → database → broker → actors, and hands
each hook to what calls it (run-finished hooks, tick hooks, metrics); nothing below
reaches back up for them. ``tickwork worker`` runs ``dramatiq workers.app:setup`` in each
worker process; ``tickwork run`` (the embedded system) and the tests call
:func:`build_runtime` directly.
"""

from __future__ import annotations

import importlib
import logging

import dramatiq
from dramatiq.middleware import Middleware

from schema.engine import Database
from tickwork.errors import ConfigError
from tickwork.logs import configure_logging
from tickwork.settings import Settings, load_settings
from workers.broker import build_broker, run_record_middleware
from workers.installs.actors import bind_install_actors
from workers.metrics.exposition import serve_merged_metrics
from workers.metrics.job_metrics import install_job_metrics
from workers.metrics.scheduler_metrics import record_tick
from workers.registry import bind_jobs
from workers.runtime import Runtime, get_runtime, set_runtime
from workers.scheduler.actors import bind_scheduler_actors
from workers.scheduler.notifications import RunNotifier
from workers.scheduler.workflows import ChainPublisher, PauseOnFailure

# The built-in jobs, one module per domain; the user's come from TICKWORK_JOB_MODULES.
BUILT_IN_JOB_MODULES = (
    "workers.jobs.housekeeping",
    "workers.jobs.metadeploy_maintenance",
    "workers.jobs.barycenter",
    "workers.jobs.installs",
    "workers.jobs.sync_jobs",
)


def import_job_modules(settings: Settings) -> None:
    """Import every job module, which declares its jobs (``@job``) in the registry.

    A module that cannot be imported — a syntax error, or a schedule that does not parse,
    which ``@job`` refuses at declaration — stops start-up naming the module.
    """
    for name in BUILT_IN_JOB_MODULES:
        importlib.import_module(name)
    for name in settings.job_module_names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(
                f"TICKWORK_JOB_MODULES: cannot import {name!r}: {type(exc).__name__}: {exc}"
            ) from None


def build_runtime(settings: Settings, db: Database | None = None) -> Runtime:
    """Build and install the process runtime: database, broker and every actor."""
    import_job_modules(settings)
    database = db or Database(settings)
    broker = build_broker(settings, get_runtime, metrics_fork=serve_worker_metrics)
    dramatiq.set_broker(broker)
    runtime = Runtime(settings=settings, db=database, broker=broker)
    set_runtime(runtime)

    run_records = run_record_middleware(broker)
    job_metrics = install_job_metrics(database)
    # Workflows first: pause on failure writes on the run what the e-mail then says.
    run_records.on_finished.append(PauseOnFailure(database))
    run_records.on_finished.append(ChainPublisher(database, broker))
    run_records.on_finished.append(RunNotifier(settings, database))
    run_records.on_finished.append(job_metrics.record_finished)

    bind_jobs(broker, settings)
    bind_scheduler_actors(
        broker,
        get_runtime,
        on_reaped=run_records.finished,
        tick_hooks=(job_metrics.record_dispatch, record_tick),
    )
    bind_install_actors(broker, settings)
    return runtime


def setup() -> None:
    """Entry point for ``dramatiq workers.app:setup`` (each worker process calls it)."""
    settings = load_settings()
    # Dramatiq's CLI runs with --skip-logging: this process logs like every other one,
    # to its stderr, which Dramatiq's main process reads and writes out line by line.
    configure_logging(settings.log_level, settings.log_format, role="worker")
    build_runtime(settings).broker.add_middleware(StopLine())


def serve_worker_metrics() -> int:
    """The metrics process of ``tickwork worker`` (Dramatiq's CLI forks it by this name):
    declares every job module's jobs, so each has its per-job gauges, then serves."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, role="worker")
    import_job_modules(settings)
    return serve_merged_metrics(settings)


class StopLine(Middleware):
    """One INFO line when a worker process has stopped (its threads finished)."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: object) -> None:
        logging.getLogger(__name__).info("worker process stopped")
