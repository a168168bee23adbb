"""One factory for the broker: RabbitMQ for ``amqp://`` URLs, in-process otherwise.

Both get the same middleware stack, configured from settings, so what runs in the
embedded mode and in unit tests is what runs in production.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from periodiq import PeriodiqMiddleware

from tickwork.contracts import TICK
from tickwork.logs import process_role
from tickwork.rabbitmq import broker_options
from tickwork.settings import Settings
from workers.acks import AcksAfterOutcome
from workers.dead_letters import DeadLetteringConsumer, DeadLetteringRabbitmqBroker
from workers.heartbeat import HeartbeatMiddleware, heartbeat_path
from workers.metrics.exposition import WorkerMetricsServer, metrics_port
from workers.metrics.multiprocess import dramatiq_prometheus, is_multiprocess
from workers.metrics.scheduler_metrics import TickPublishMetrics
from workers.middleware.poison import PoisonMiddleware
from workers.middleware.run_records import RunRecordMiddleware
from workers.runtime import Runtime

logger = logging.getLogger(__name__)


def build_middleware(
    settings: Settings,
    runtime: Callable[[], Runtime],
    metrics_fork: Callable[[], int] | None = None,
) -> list[Middleware]:
    """The middleware stack, in order. RunRecord sits just before Retries because
    after-hooks run in reverse: Retries decides first whether the message failed."""
    return [
        *_metrics_middleware(settings, metrics_fork),
        AgeLimit(max_age=settings.message_age_limit_s * 1000),
        TimeLimit(time_limit=settings.default_time_limit_s * 1000),
        ShutdownNotifications(notify_shutdown=True),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        # Late ticks are dropped: the next tick covers the gap (catch-up policy).
        PeriodiqMiddleware(skip_delay=settings.tick_skip_after_s),
        HeartbeatMiddleware(lambda: _heartbeat_file(settings), settings.heartbeat_interval_s),
        Prefetch(settings.worker_prefetch),
        PoisonMiddleware(runtime, settings.max_message_bytes),
        RunRecordMiddleware(runtime),
        Retries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
        ),
    ]


DELAY_PREFETCH_PER_THREAD = 1000  # Dramatiq's own default, now stated here


class Prefetch(Middleware):
    """Sets how many messages a worker takes per queue before acking (Dramatiq's default,
    2 per thread, starves the batched outcome writes: acks wait for their commit), and
    from each delay queue (held unacked until due). Both explicit: a quorum queue has
    no global QoS to fall back on, and an unset prefetch would be unlimited."""

    def __init__(self, prefetch: int) -> None:
        self.prefetch = prefetch

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        worker.queue_prefetch = self.prefetch or 4 * worker.worker_threads
        worker.delay_prefetch = min(DELAY_PREFETCH_PER_THREAD * worker.worker_threads, 65535)


def _heartbeat_file(settings: Settings) -> Path | None:
    """Where this process's worker beats: `tickwork worker` and `tickwork run` only (by
    role, unless TICKWORK_HEARTBEAT_FILE names the file). A Dramatiq worker started in any
    other process (tests, scripts) has no liveness probe, so no file of its own."""
    role = process_role()
    if settings.heartbeat_file is None and role not in ("worker", "run"):
        return None
    return heartbeat_path(settings, role)


def _metrics_middleware(
    settings: Settings, metrics_fork: Callable[[], int] | None
) -> list[Middleware]:
    """Metrics middleware: ticks published (every process); in ``tickwork worker``
    (multiprocess mode) also Dramatiq's Prometheus and the fork serving the port."""
    stack: list[Middleware] = [TickPublishMetrics(TICK)]
    if is_multiprocess() and not settings.embedded_broker:
        stack.insert(0, dramatiq_prometheus())
        if metrics_port(settings, "worker") and metrics_fork is not None:
            stack.append(WorkerMetricsServer(metrics_fork))
    return stack


class WorkerConsumer(AcksAfterOutcome, DeadLetteringConsumer):
    """Refuses malformed bodies with a reason; acks a job's message after its outcome."""


class WorkerRabbitmqBroker(DeadLetteringRabbitmqBroker):
    """tickwork's RabbitMQ broker for workers (see :class:`WorkerConsumer`)."""

    acks_after_outcome = True  # RunRecordMiddleware may hand outcomes over without waiting

    @property
    def consumer_class(self) -> type[WorkerConsumer]:
        return WorkerConsumer


def build_broker(
    settings: Settings,
    runtime: Callable[[], Runtime],
    metrics_fork: Callable[[], int] | None = None,
) -> dramatiq.Broker:
    middleware = build_middleware(settings, runtime, metrics_fork)
    broker: dramatiq.Broker
    if settings.embedded_broker:
        broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
    else:
        broker = WorkerRabbitmqBroker(middleware=middleware, **broker_options(settings))
    return broker


def run_record_middleware(broker: dramatiq.Broker) -> RunRecordMiddleware:
    for middleware in broker.middleware:
        if isinstance(middleware, RunRecordMiddleware):
            return middleware
    raise LookupError("broker has no RunRecordMiddleware")
