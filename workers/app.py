"""Wires a process together: settings → database → broker → job actors.

``dramatiq workers.app`` (what ``tickwork worker`` runs) imports this module in each
worker process; :data:`broker` is then the configured broker with every job bound.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import Middleware

from schema.engine import Database
from tickwork.settings import Settings, load_settings
from workers.broker import build_broker
from workers.registry import bind_jobs
from workers.runtime import Runtime, get_runtime, set_runtime


def build_runtime(settings: Settings, db: Database | None = None) -> Runtime:
    """Build and install the process runtime: database, broker and every job actor."""
    database = db or Database(settings)
    broker = build_broker(settings, get_runtime)
    dramatiq.set_broker(broker)
    runtime = Runtime(settings=settings, db=database, broker=broker)
    set_runtime(runtime)
    bind_jobs(broker, settings)
    from workers.broker import run_record_middleware
    from workers.scheduler.notifications import RunNotifier

    run_record_middleware(broker).on_finished.append(RunNotifier(settings, database))
    from workers.scheduler.actors import bind_scheduler_actors

    bind_scheduler_actors(broker, settings)
    from workers.installs.actors import bind_install_actors

    bind_install_actors(broker, settings)
    _install_metrics(broker, database)
    return runtime


def _install_metrics(broker: dramatiq.Broker, database: Database) -> None:
    """Per-job and tick metrics, fed by the run-finished and on-tick hooks."""
    from workers.broker import run_record_middleware
    from workers.metrics.job_metrics import install_job_metrics
    from workers.metrics.scheduler_metrics import record_tick
    from workers.scheduler.actors import add_tick_hook

    jobs = install_job_metrics(database)
    run_record_middleware(broker).on_finished.append(jobs.record_finished)
    add_tick_hook(jobs.record_dispatch)
    add_tick_hook(record_tick)


def __getattr__(name: str) -> object:
    # `dramatiq workers.app` looks up `broker` here; build the runtime on first use.
    if name == "broker":
        return get_runtime().broker
    raise AttributeError(name)


def setup() -> None:
    """Entry point for ``dramatiq workers.app:setup`` (each worker process calls it)."""
    from producers.checks import check_registered_schedules
    from tickwork.logs import configure_logging

    settings = load_settings()
    # Dramatiq's CLI runs with --skip-logging: this process logs like every other one,
    # to its stderr, which Dramatiq's main process reads and writes out line by line.
    configure_logging(settings.log_level, settings.log_format, role="worker")
    check_registered_schedules(settings)
    build_runtime(settings).broker.add_middleware(StopLine())


class StopLine(Middleware):
    """One INFO line when a worker process has stopped (its threads finished)."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: object) -> None:
        logging.getLogger(__name__).info("worker process stopped")
