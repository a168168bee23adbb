"""One factory for the broker: RabbitMQ for ``amqp://`` URLs, in-process otherwise.

Both get the same middleware stack, configured from settings, so what runs in the
embedded mode and in unit tests is what runs in production.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

from tickwork.logs import process_role
from tickwork.settings import Settings
from workers.dead_letters import DeadLetteringRabbitmqBroker
from workers.heartbeat import HeartbeatMiddleware, heartbeat_path
from workers.middleware.poison import PoisonMiddleware
from workers.middleware.run_records import RunRecordMiddleware
from workers.runtime import Runtime

logger = logging.getLogger(__name__)


def build_middleware(settings: Settings, runtime: Callable[[], Runtime]) -> list[Middleware]:
    """The middleware stack, in order. RunRecord sits just before Retries because
    after-hooks run in reverse: Retries decides first whether the message failed."""
    return [
        *_metrics_middleware(settings),
        AgeLimit(max_age=settings.message_age_limit_s * 1000),
        TimeLimit(time_limit=settings.default_time_limit_s * 1000),
        ShutdownNotifications(notify_shutdown=True),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        # Late ticks are dropped: the next tick covers the gap (catch-up policy).
        PeriodiqMiddleware(skip_delay=settings.tick_skip_after_s),
        HeartbeatMiddleware(lambda: _heartbeat_file(settings), settings.heartbeat_interval_s),
        PoisonMiddleware(runtime, settings.max_message_bytes),
        RunRecordMiddleware(runtime),
        Retries(
            max_retries=settings.max_retries,
            min_backoff=settings.min_backoff_ms,
            max_backoff=settings.max_backoff_ms,
        ),
    ]


def _heartbeat_file(settings: Settings) -> Path | None:
    """Where this process's worker beats: `tickwork worker` and `tickwork run` only (by
    role, unless TICKWORK_HEARTBEAT_FILE names the file). A Dramatiq worker started in any
    other process (tests, scripts) has no liveness probe, so no file of its own."""
    role = process_role()
    if settings.heartbeat_file is None and role not in ("worker", "run"):
        return None
    return heartbeat_path(settings, role)


def _metrics_middleware(settings: Settings) -> list[Middleware]:
    """Metrics middleware: ticks published (every process); in ``tickwork worker``
    (multiprocess mode) also Dramatiq's Prometheus and the fork serving the port."""
    from workers.metrics.multiprocess import dramatiq_prometheus, is_multiprocess
    from workers.metrics.scheduler_metrics import TickPublishMetrics
    from workers.scheduler.actors import TICK_ACTOR

    stack: list[Middleware] = [TickPublishMetrics(TICK_ACTOR)]
    if is_multiprocess() and not settings.embedded_broker:
        from workers.metrics.exposition import WorkerMetricsServer, metrics_port

        stack.insert(0, dramatiq_prometheus())
        if metrics_port(settings, "worker"):
            stack.append(WorkerMetricsServer())
    return stack


def build_broker(settings: Settings, runtime: Callable[[], Runtime]) -> dramatiq.Broker:
    middleware = build_middleware(settings, runtime)
    broker: dramatiq.Broker
    if settings.embedded_broker:
        broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
    else:
        url = settings.broker_url or ""
        if "heartbeat=" not in url:  # notice a dead broker within a minute
            url += ("&" if "?" in url else "?") + "heartbeat=30"
        broker = TickworkRabbitmqBroker(
            url=url,
            middleware=middleware,
            confirm_delivery=settings.broker_confirm_delivery,
        )
    return broker


def run_record_middleware(broker: dramatiq.Broker) -> RunRecordMiddleware:
    for middleware in broker.middleware:
        if isinstance(middleware, RunRecordMiddleware):
            return middleware
    raise LookupError("broker has no RunRecordMiddleware")


# --- publishing connections that go idle ------------------------------------------------
RABBITMQ_DEFAULT_HEARTBEAT_S = 60


class TickworkRabbitmqBroker(DeadLetteringRabbitmqBroker):
    """Dramatiq's RabbitMQ broker whose per-thread publishing connections never go stale.

    Dramatiq publishes on one ``BlockingConnection`` per thread (each worker thread that
    sends a message, each consumer thread that declared its queue, the scheduler's main
    thread). A blocking connection answers RabbitMQ's heartbeats only while its own thread
    uses it, so one left idle longer than the heartbeat timeout is closed by RabbitMQ
    ("missed heartbeats from client"). Dramatiq notices only at the next use: pika then
    logs a ``ConnectionResetError`` traceback and several ERROR lines before Dramatiq
    reconnects and retries -- at a publish after a quiet minute, and for every such
    connection at shutdown, when ``close()`` closes them all (one SIGTERM: dozens of
    tracebacks; Dramatiq itself filters only "Broken pipe" out of them).

    Here a thread's connection idle for half the heartbeat timeout (when pika would have
    had to send a heartbeat) is closed and replaced before it is used, and closing one
    that the broker may already have dropped -- that one, or any at shutdown -- is
    expected: pika's reports of it are logged at DEBUG, in that thread only. A connection
    lost while in use (the broker restarted) is still reported as pika and Dramatiq do.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        params = self.parameters[0] if isinstance(self.parameters, list) else self.parameters
        heartbeat = getattr(params, "heartbeat", None)
        if heartbeat is None or not isinstance(heartbeat, int | float):
            heartbeat = RABBITMQ_DEFAULT_HEARTBEAT_S  # the server's value is used
        self.idle_limit_s: float = heartbeat / 2 if heartbeat > 0 else math.inf
        _install_expected_disconnect_filter()

    @property
    def connection(self) -> Any:
        self._replace_if_idle()
        return super().connection

    @connection.deleter
    def connection(self) -> None:
        DeadLetteringRabbitmqBroker.connection.fdel(self)  # type: ignore[attr-defined]

    @property
    def channel(self) -> Any:
        self._replace_if_idle()
        return super().channel

    @channel.deleter
    def channel(self) -> None:
        DeadLetteringRabbitmqBroker.channel.fdel(self)  # type: ignore[attr-defined]

    def _replace_if_idle(self) -> None:
        state = self.state
        now = time.monotonic()
        last: float | None = getattr(state, "last_used", None)
        state.last_used = now
        connection = getattr(state, "connection", None)
        if connection is None or last is None or now - last <= self.idle_limit_s:
            return
        channel = getattr(state, "channel", None)
        for name in ("channel", "connection"):
            if hasattr(state, name):
                delattr(state, name)
        self.channels.discard(channel)
        self.connections.discard(connection)
        logger.debug("replacing a publishing connection idle for %.0f s", now - last)
        _close_quietly([channel, connection])

    def close(self) -> None:
        """Close every channel, then every connection; at shutdown a connection the broker
        already dropped is expected (pika's reports of it at DEBUG)."""
        with expected_disconnects():
            super().close()


def _close_quietly(things: list[Any]) -> None:
    with expected_disconnects():
        for thing in things:
            try:
                if thing is not None and thing.is_open:
                    thing.close()
            except Exception as exc:  # already closed by the broker: nothing to release
                logger.debug("closing %r: %s", thing, exc)


_expected = threading.local()


@contextmanager
def expected_disconnects() -> Iterator[None]:
    """In this thread, while the block runs, pika's reports of a lost or already-closed
    connection are expected: logged at DEBUG (and dropped unless pika logs at DEBUG)."""
    _install_expected_disconnect_filter()
    depth: int = getattr(_expected, "depth", 0)
    _expected.depth = depth + 1
    try:
        yield
    finally:
        _expected.depth = depth


class _ExpectedDisconnectFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_expected, "depth", 0) or record.levelno <= logging.DEBUG:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_FILTER = _ExpectedDisconnectFilter()


def _install_expected_disconnect_filter() -> None:
    """On every pika logger (a logger's filters see only its own records, not its
    children's, so the filter goes on each module's logger)."""
    import pika  # noqa: F401  (creates pika's module loggers)

    for name, item in list(logging.root.manager.loggerDict.items()):
        if (
            (name == "pika" or name.startswith("pika."))
            and isinstance(item, logging.Logger)
            and _FILTER not in item.filters
        ):
            item.addFilter(_FILTER)
