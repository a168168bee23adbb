"""Status-change events for a UI to follow: job, preflight and org started/completed/...

With RabbitMQ they go to a topic exchange (``<prefix><events_exchange>``), routing key
``<kind>.<status>`` (``job.started``, ``org.failed``...), body JSON. A UI binds its own
queue with ``job.#`` or ``#.failed``. In the embedded mode they go to in-process
listeners instead. Events are notifications: the database row is the truth, so a
publish that fails is logged and dropped, never allowed to fail the job.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from schema.base import utcnow
from tickwork.settings import Settings

logger = logging.getLogger(__name__)

EventKind = Literal["job", "preflight", "org"]
EventStatus = Literal["started", "completed", "failed", "canceled"]
KINDS: tuple[str, ...] = ("job", "preflight", "org")
STATUSES: tuple[str, ...] = ("started", "completed", "failed", "canceled")


@dataclass(frozen=True)
class StatusEvent:
    kind: str
    id: str
    status: str
    at: str = field(default_factory=lambda: utcnow().isoformat())
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        return f"{self.kind}.{self.status}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


class EventPublisher(Protocol):
    def publish(self, event: StatusEvent) -> None: ...

    def close(self) -> None: ...


Listener = Callable[[StatusEvent], None]


class LocalEvents:
    """The embedded equivalent of the exchange: every listener gets every event."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    def publish(self, event: StatusEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("event listener %r failed on %s", listener, event.routing_key)

    def close(self) -> None:
        self.listeners.clear()


class RabbitEvents:
    """Publishes to a durable topic exchange with pika; one connection per thread
    (pika connections are not thread-safe), reconnecting after a broker restart."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url = url
        self.exchange = exchange
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []

    def _channel(self) -> Any:
        import pika

        channel = getattr(self._local, "channel", None)
        if channel is not None and channel.is_open:
            return channel
        params = pika.URLParameters(self.url)
        params.socket_timeout = 5
        params.blocked_connection_timeout = 5
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        self._local.channel = channel
        with self._lock:
            self._connections.append(connection)
        return channel

    def publish(self, event: StatusEvent) -> None:
        import pika

        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        for attempt in (1, 2):  # a second try on a fresh connection after a broker restart
            try:
                self._channel().basic_publish(
                    self.exchange, event.routing_key, event.to_json(), properties
                )
                return
            except Exception:
                self._local.channel = None
                if attempt == 2:
                    logger.warning("could not publish event %s", event.routing_key, exc_info=True)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            try:
                if connection.is_open:
                    connection.close()
            except Exception:
                logger.debug("closing an event connection failed", exc_info=True)


_publishers: dict[tuple[str | None, str], EventPublisher] = {}
_publishers_lock = threading.Lock()


def events_for(settings: Settings) -> EventPublisher:
    """The process's publisher for these settings (shared by client and workers)."""
    exchange = settings.queue(settings.events_exchange)
    key = (settings.broker_url, exchange)
    with _publishers_lock:
        publisher = _publishers.get(key)
        if publisher is None:
            if settings.broker_url is None:
                publisher = LocalEvents()
            else:
                publisher = RabbitEvents(settings.broker_url, exchange)
            _publishers[key] = publisher
        return publisher


def local_events(settings: Settings) -> LocalEvents:
    """The embedded mode's listener list, to subscribe to (raises on RabbitMQ)."""
    publisher = events_for(settings)
    if not isinstance(publisher, LocalEvents):
        raise TypeError("events go to RabbitMQ: bind a queue to the topic exchange instead")
    return publisher


def emit(
    settings: Settings, kind: str, obj_id: int | str, status: str, **detail: Any
) -> StatusEvent:
    """Publish one status change; ``status`` uses the event words (completed, ...)."""
    if kind not in KINDS or status not in STATUSES:
        raise ValueError(f"unknown event {kind}.{status}")
    event = StatusEvent(kind=kind, id=str(obj_id), status=status, detail=detail)
    events_for(settings).publish(event)
    return event
