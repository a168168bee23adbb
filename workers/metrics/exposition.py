"""Serving the metrics: one registry per process, one port per process.

What a scrape returns is the same everywhere — the process's metrics plus the
scrape-time collectors (queue depths, scheduler state, expected intervals, first runs):

- ``tickwork worker``: Dramatiq's CLI forks N worker processes; they write their
  metrics (Dramatiq's and tickwork's) to the multiprocess directory. Dramatiq's own
  exposition server (port 9191) is *not* started; instead one extra process forked by
  the same CLI (:func:`workers.app.serve_worker_metrics`) serves the merged files plus the
  collectors on ``TICKWORK_METRICS_PORT`` (9191 by default, Dramatiq's usual port).
- ``tickwork scheduler``: a single process; a thread serves its in-memory registry
  plus the collectors on ``TICKWORK_METRICS_PORT`` (9192 by default, so a worker and a
  scheduler on one host do not collide).
- the admin API calls :func:`render_metrics` for its ``/metrics`` route (the API port).

``TICKWORK_METRICS_PORT`` set overrides the role's default; 0 disables the endpoint.

A collector that fails (database or broker down) drops out of that scrape and
``tickwork_metrics_collector_up{collector}`` turns 0; the rest is still served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import dramatiq
from dramatiq.middleware import Middleware

from schema.engine import Database
from tickwork.settings import Settings
from workers.metrics.dead_letter_metrics import StoredDeadLettersCollector
from workers.metrics.job_metrics import ExpectedIntervalCollector, FirstRunCollector
from workers.metrics.multiprocess import is_multiprocess, multiprocess_dir
from workers.metrics.queue_metrics import QueueDepthCollector
from workers.metrics.scheduler_metrics import SchedulerStateCollector

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from workers.runtime import Runtime

logger = logging.getLogger(__name__)


class _Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class GuardedCollectors:
    """Runs scrape-time collectors; one failing never fails the whole scrape."""

    def __init__(self, collectors: dict[str, _Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(
            "tickwork_metrics_collector_up",
            "1 if the scrape-time collector could read its source (database, broker), else 0.",
            labels=["collector"],
        )
        for name, collector in self._collectors.items():
            try:
                families = list(collector.collect())
            except Exception as exc:
                logger.warning("metrics collector %s failed: %s", name, exc)
                up.add_metric([name], 0.0)
                continue
            up.add_metric([name], 1.0)
            yield from families
        yield up

    def describe(self) -> list[Any]:
        return []


class _ProcessRegistry:
    """The default registry as a collector (single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        from prometheus_client import REGISTRY

        return REGISTRY.collect()

    def describe(self) -> list[Any]:
        return []


def build_registry(
    settings: Settings, db: Database | None, broker: dramatiq.Broker | None = None
) -> CollectorRegistry:
    """A registry with this process's metrics and the scrape-time collectors."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if is_multiprocess() and directory is not None:
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessRegistry())
    collectors: dict[str, _Collector] = {"queues": QueueDepthCollector(settings, broker)}
    if db is not None:
        collectors["scheduler_state"] = SchedulerStateCollector(db)
        collectors["expected_intervals"] = ExpectedIntervalCollector(db)
        collectors["first_runs"] = FirstRunCollector(db)
        collectors["dead_letters_stored"] = StoredDeadLettersCollector(db)
    registry.register(GuardedCollectors(collectors))
    return registry


_lock = threading.Lock()
_cached: tuple[Runtime, CollectorRegistry] | None = None  # the runtime itself: ids get reused


def render_metrics(runtime: Runtime) -> tuple[bytes, str]:
    """The Prometheus text exposition of this process and ``runtime``'s database and
    broker: ``(body, content_type)``."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    global _cached
    with _lock:
        if _cached is None or _cached[0] is not runtime:
            _cached = (runtime, build_registry(runtime.settings, runtime.db, runtime.broker))
        registry = _cached[1]
    return generate_latest(registry), CONTENT_TYPE_LATEST


DEFAULT_METRICS_PORTS = {"worker": 9191, "scheduler": 9192}


def metrics_port(settings: Settings, role: str) -> int:
    """The metrics port of a ``role`` process: TICKWORK_METRICS_PORT when set, else the
    role's own default (0: no endpoint)."""
    if settings.metrics_port is not None:
        return settings.metrics_port
    return DEFAULT_METRICS_PORTS.get(role, 0)


def start_metrics_server(
    settings: Settings, registry: CollectorRegistry, role: str = "scheduler"
) -> threading.Thread:
    """Serve ``registry`` on ``metrics_host`` and the role's port in a daemon thread."""
    from prometheus_client import start_http_server

    port = metrics_port(settings, role)
    _server, thread = start_http_server(port, addr=settings.metrics_host, registry=registry)
    logger.info("metrics served on http://%s:%d/metrics", settings.metrics_host, port)
    return thread


def serve_merged_metrics(settings: Settings) -> int:
    """The body of ``tickwork worker``'s metrics process
    (:func:`workers.app.serve_worker_metrics`, which declares the jobs first): serve until
    the process is told to stop."""
    database = Database(settings)
    registry = build_registry(settings, database, broker=None)
    try:
        thread = start_metrics_server(settings, registry, role="worker")
    except OSError as exc:
        logger.error(
            "TICKWORK_METRICS_PORT: cannot serve metrics on %s:%d (%s); metrics are NOT served",
            settings.metrics_host,
            metrics_port(settings, "worker"),
            exc,
        )
        return 1
    try:
        while thread.is_alive():
            time.sleep(1)  # SIGTERM ends the fork process through Dramatiq's handler
    finally:  # Dramatiq's SIGTERM handler raises SystemExit(0) here
        database.dispose()
        logger.info("metrics process stopped")
    return 0


class WorkerMetricsServer(Middleware):
    """Asks Dramatiq's CLI to fork ``fork`` (a module-level function: the CLI imports it
    by name in the new process) beside the workers, to serve the port."""

    def __init__(self, fork: Callable[[], int]) -> None:
        self._fork = fork

    @property
    def forks(self) -> list[Any]:
        return [self._fork]
