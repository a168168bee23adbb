"""Dramatiq's RabbitMQ broker, with publishing connections that never go stale.

Every process that talks to RabbitMQ uses it: senders (:func:`tickwork.publish.sender_broker`)
and workers (:class:`workers.dead_letters.DeadLetteringRabbitmqBroker` builds on it).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker

logger = logging.getLogger(__name__)

RABBITMQ_DEFAULT_HEARTBEAT_S = 60


class FreshConnectionsRabbitmqBroker(RabbitmqBroker):
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
        RabbitmqBroker.connection.fdel(self)  # type: ignore[attr-defined]

    @property
    def channel(self) -> Any:
        self._replace_if_idle()
        return super().channel

    @channel.deleter
    def channel(self) -> None:
        RabbitmqBroker.channel.fdel(self)  # type: ignore[attr-defined]

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
