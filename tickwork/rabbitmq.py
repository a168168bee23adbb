"""Dramatiq's RabbitMQ broker, with publishing connections that never go stale, on one
node or a cluster's, with classic or quorum queues.

Every process that talks to RabbitMQ uses it: senders (:func:`tickwork.publish.sender_broker`)
and workers (:class:`workers.dead_letters.DeadLetteringRabbitmqBroker` builds on it).
Other AMQP connections (dead-letter collection, queue metrics, checks) use :func:`connect`,
so every one of them knows every node of a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, q_name, xq_name
from dramatiq.errors import ConnectionClosed

logger = logging.getLogger(__name__)

RABBITMQ_DEFAULT_HEARTBEAT_S = 60
QueueType = Literal["classic", "quorum"]
QUEUE_TYPES: tuple[QueueType, ...] = ("classic", "quorum")
# At-least-once dead-lettering of quorum queues (RabbitMQ 3.10+): a dead-lettered message
# leaves its queue only once the dead-letter queue has confirmed it.
AT_LEAST_ONCE_SINCE = (3, 10)


def with_heartbeat(url: str) -> str:
    """``url`` with an AMQP heartbeat, so a dead broker is noticed within a minute."""
    if "heartbeat=" in url:
        return url
    return url + ("&" if "?" in url else "?") + "heartbeat=30"


def node_urls(broker_url: str | Sequence[str]) -> list[str]:
    """The node URLs of ``broker_url`` (comma-separated, or a list), with heartbeats, in
    a random order: the processes of a deployment spread over a cluster's nodes, and each
    still tries every node before giving up (pika tries a list in order)."""
    urls = broker_url.split(",") if isinstance(broker_url, str) else list(broker_url)
    urls = [with_heartbeat(u.strip()) for u in urls if u.strip()]
    random.shuffle(urls)
    expect_nodes_down(len(urls))
    return urls


# pika's reports of one node refusing a connection attempt. With several nodes, the next
# is tried: one node down is expected, not an error (if every node fails, pika raises and
# the caller reports it). Kept as WARNING, so a node that stays down is still seen.
_NODE_ATTEMPT_MESSAGES = (
    "Socket failed to connect",
    "TCP Connection attempt failed",
    "AMQPConnector - reporting failure",
)
_NODE_ATTEMPT_LOGGERS = (
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.utils.connection_workflow",
)


class _OneNodeDownFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(_NODE_ATTEMPT_MESSAGES):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_ONE_NODE_DOWN = _OneNodeDownFilter()


def expect_nodes_down(node_count: int) -> None:
    """With more than one node URL, pika's per-node connection failures log as WARNING."""
    if node_count < 2:
        return
    for name in _NODE_ATTEMPT_LOGGERS:
        log = logging.getLogger(name)
        if _ONE_NODE_DOWN not in log.filters:
            log.addFilter(_ONE_NODE_DOWN)


def connect(broker_url: str | Sequence[str], timeout_s: float | None = None) -> Any:
    """A ``pika.BlockingConnection`` to the first node of ``broker_url`` that answers."""
    import pika

    parameters = []
    for url in node_urls(broker_url):
        params = pika.URLParameters(url)
        if timeout_s is not None:
            params.socket_timeout = timeout_s
            params.blocked_connection_timeout = timeout_s
            params.stack_timeout = timeout_s
        parameters.append(params)
    return pika.BlockingConnection(parameters)


def queue_arguments(
    queue_name: str,
    queue_type: QueueType,
    delivery_limit: int,
    *,
    at_least_once: bool = True,
    max_priority: int | None = None,
) -> dict[str, Any]:
    """The arguments tickwork declares ``queue_name`` with (a work queue, its ``.DQ`` or
    its ``.XQ``). Classic: exactly Dramatiq's. Quorum: the same dead-lettering, and

    - on the work queue, ``x-delivery-limit``: a message returned that often without an
      ack (its worker died: Dramatiq does not count that as a retry) is dead-lettered by
      RabbitMQ, at least once where the server can (3.10+);
    - none on the ``.DQ``: workers hold delayed messages unacked until due, and each
      worker restart returns them -- a limit would dead-letter a retry for a rolling
      deploy; nothing in a delay queue is run there;
    - none on the ``.XQ`` (it has no dead-letter queue of its own: a limit would drop).

    Quorum queues have no ``x-max-priority`` (per-message priority came in 4.0, without
    it): asking for both is refused.
    """
    canonical = q_name(queue_name)
    if queue_name.endswith(".XQ"):
        arguments: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL}
    else:
        arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(canonical)}
        if max_priority:
            if queue_type == "quorum":
                raise ValueError(
                    "quorum queues do not support x-max-priority: use classic queues for "
                    "broker priorities, or drop max_priority"
                )
            arguments["x-max-priority"] = max_priority
    if queue_type == "classic":
        return arguments
    arguments["x-queue-type"] = "quorum"
    if queue_name == canonical:
        arguments["x-delivery-limit"] = delivery_limit
        if at_least_once:
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"  # at-least-once requires it
    return arguments


def broker_options(settings: Any) -> dict[str, Any]:
    """The keyword arguments of :class:`FreshConnectionsRabbitmqBroker` for ``settings``
    (a :class:`tickwork.settings.Settings`): every node, queue type, confirms."""
    return {
        "url": node_urls(settings.broker_urls),
        "confirm_delivery": settings.broker_confirm_delivery,
        "queue_type": settings.queue_type,
        "delivery_limit": settings.queue_delivery_limit,
        "publish_timeout_s": settings.broker_publish_timeout_s,
    }


def server_version(connection: Any) -> tuple[int, ...]:
    """The RabbitMQ version a ``pika.BlockingConnection`` is connected to ((0,) unknown)."""
    impl = getattr(connection, "_impl", connection)
    raw = (getattr(impl, "server_properties", None) or {}).get("version", b"")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    numbers = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers) or (0,)


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

    def __init__(
        self,
        *,
        queue_type: QueueType = "classic",
        delivery_limit: int = 5,
        publish_timeout_s: float = 0,
        **kwargs: Any,
    ) -> None:
        if queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue_type must be classic or quorum, not {queue_type!r}")
        if queue_type == "quorum" and not kwargs.get("confirm_delivery"):
            raise ValueError("quorum queues need confirm_delivery=True (publisher confirms)")
        if queue_type == "quorum" and kwargs.get("max_priority"):
            raise ValueError("quorum queues do not support x-max-priority (max_priority)")
        url = kwargs.get("url")
        if isinstance(url, str) and "," in url:  # a cluster's nodes, as in the settings
            kwargs["url"] = node_urls(url)
        super().__init__(**kwargs)
        self.queue_type: QueueType = queue_type
        self.delivery_limit = delivery_limit
        self.publish_timeout_s = publish_timeout_s
        params = self.parameters[0] if isinstance(self.parameters, list) else self.parameters
        heartbeat = getattr(params, "heartbeat", None)
        if heartbeat is None or not isinstance(heartbeat, int | float):
            heartbeat = RABBITMQ_DEFAULT_HEARTBEAT_S  # the server's value is used
        self.idle_limit_s: float = heartbeat / 2 if heartbeat > 0 else math.inf
        _install_expected_disconnect_filter()

    @property
    def connection(self) -> Any:
        self._replace_if_idle()
        connection = super().connection
        self._arm_publish_timer(connection)
        return connection

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

    # --- a publish RabbitMQ cannot confirm fails, it does not hang --------------------
    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        """Dramatiq's enqueue, bounded by ``publish_timeout_s`` when publishing is
        confirmed. A quorum queue that has lost its majority neither confirms nor refuses
        a publish: pika would wait for ever. Past the timeout the publish raises
        :class:`PublishTimeout` -- the message counts as not sent (RabbitMQ may still
        take it once the majority is back: at least once, as always) -- and the
        connection it used is dropped, so the next publish starts clean."""
        if not self.confirm_delivery or not self.publish_timeout_s:
            return super().enqueue(message, delay=delay)
        state = self.state
        state.publish_deadline = time.monotonic() + self.publish_timeout_s
        try:
            return super().enqueue(message, delay=delay)
        except _ConfirmOverdue:
            logger.error(
                "RabbitMQ did not confirm message %s on %s within %.0f s; not sent",
                message.message_id,
                message.queue_name,
                self.publish_timeout_s,
            )
            self._discard_thread_connection()
            raise PublishTimeout(  # type: ignore[no-untyped-call]
                f"RabbitMQ did not confirm message {message.message_id} on queue "
                f"{message.queue_name!r} within {self.publish_timeout_s:g} s (a quorum queue "
                "without a majority of its nodes, or a blocked broker): not sent"
            ) from None
        finally:
            state.publish_deadline = None
            self._disarm_publish_timer()

    def _arm_publish_timer(self, connection: Any) -> None:
        state = self.state
        deadline = getattr(state, "publish_deadline", None)
        armed = getattr(state, "publish_timer", None)
        if deadline is None or (armed is not None and armed[0] is connection):
            return
        impl = getattr(connection, "_impl", None)
        if impl is None:
            return
        timer = impl.ioloop.call_later(max(0.0, deadline - time.monotonic()), _overdue)
        state.publish_timer = (connection, timer)

    def _disarm_publish_timer(self) -> None:
        armed = getattr(self.state, "publish_timer", None)
        self.state.publish_timer = None
        if armed is not None:
            with contextlib.suppress(Exception):  # its connection is gone already
                armed[0]._impl.ioloop.remove_timeout(armed[1])

    def _discard_thread_connection(self) -> None:
        state = self.state
        channel = getattr(state, "channel", None)
        connection = getattr(state, "connection", None)
        for name in ("channel", "connection"):
            if hasattr(state, name):
                delattr(state, name)
        self.channels.discard(channel)
        self.connections.discard(connection)
        # Dropped, not closed: RabbitMQ answers a close only once the unconfirmed publish
        # is settled (a minute later), and nothing else uses this connection.
        impl = getattr(connection, "_impl", None)
        try:
            impl._adapter_disconnect_stream()  # type: ignore[union-attr]
        except Exception:
            _close_quietly([connection])

    # --- queue arguments (Dramatiq declares Q, Q.DQ and Q.XQ on first use) -------------
    def _arguments(self, queue_name: str) -> dict[str, Any]:
        at_least_once = False
        if self.queue_type == "quorum":
            at_least_once = server_version(self.connection) >= AT_LEAST_ONCE_SINCE
        return queue_arguments(
            queue_name,
            self.queue_type,
            self.delivery_limit,
            at_least_once=at_least_once,
            max_priority=self.max_priority,
        )

    def _declare_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=queue_name, durable=True, arguments=self._arguments(queue_name)
        )

    def _declare_dq_queue(self, queue_name: str) -> Any:
        name = dq_name(queue_name)
        return self.channel.queue_declare(queue=name, durable=True, arguments=self._arguments(name))

    def _declare_xq_queue(self, queue_name: str) -> Any:
        name = xq_name(queue_name)
        return self.channel.queue_declare(queue=name, durable=True, arguments=self._arguments(name))

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


class PublishTimeout(ConnectionClosed):
    """RabbitMQ did not confirm a publish in time: the message is not sent (a kind of
    Dramatiq's ConnectionClosed, so senders that retry a lost broker retry this too)."""


class _ConfirmOverdue(Exception):
    """Raised by a connection's timer inside pika's wait for a confirm (not an AMQP
    error, so Dramatiq's enqueue does not retry on the same stuck queue)."""


def _overdue() -> None:
    raise _ConfirmOverdue


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
