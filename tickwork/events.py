"""Status-change events for a UI to follow: job, preflight and org started/completed/...

With RabbitMQ they go to a topic exchange (``<prefix><events_exchange>``), routing key
``<kind>.<status>`` (``job.started``, ``org.failed``...), body JSON. A UI binds its own
queue with ``job.#`` or ``#.failed``. In the embedded mode they go to in-process
listeners instead. Events are notifications: the database row is the truth, so a
publish that fails is logged and dropped, never allowed to fail the job.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from tickwork.clock import utcnow
from tickwork.settings import Settings

logger = logging.getLogger(__name__)

EventKind = Literal["job", "preflight", "org", "user"]
EventStatus = Literal["started", "completed", "failed", "canceled", "token_expired"]
KINDS: tuple[str, ...] = ("job", "preflight", "org", "user")
# user.token_expired: MetaDeploy's user_token_expired (the user must log in again).
STATUSES: tuple[str, ...] = ("started", "completed", "failed", "canceled", "token_expired")


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
    """Publishes to a durable topic exchange from one background thread per process.

    ``publish`` only queues the event, so a slow or restarting RabbitMQ never holds up a
    job's state change; the thread keeps one pika connection (pika connections are not
    thread-safe), services its heartbeats while idle, reconnects after a broker restart,
    and is flushed at exit. Events are notifications: when the queue is full or RabbitMQ
    stays away, they are logged and dropped.
    """

    def __init__(self, url: str, exchange: str, max_pending: int = 10_000) -> None:
        self.url = url
        self.exchange = exchange
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._queue: queue.Queue[StatusEvent | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._registered = False

    def publish(self, event: StatusEvent) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            logger.warning("event queue full (%d): dropped %s", self.max_pending, event.routing_key)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread did not come along
                self._queue = queue.Queue(self.max_pending)
                self._thread, self._pid = None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="tickwork-events", daemon=True
                )
                self._thread.start()
                if not self._registered:
                    atexit.register(self.close)
                    self._registered = True

    def _connect(self) -> tuple[Any, Any]:
        from tickwork.rabbitmq import connect  # pika and Dramatiq only once events are sent

        connection = connect(self.url, timeout_s=5)  # any live node of a cluster
        channel = connection.channel()
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        return connection, channel

    def _run(self, events: queue.Queue[StatusEvent | None]) -> None:
        import pika

        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
        connection: Any = None
        channel: Any = None
        while True:
            try:
                event = events.get(timeout=10)
            except queue.Empty:
                if connection is not None:  # answer heartbeats, or notice the loss
                    try:
                        connection.process_data_events(0)
                    except Exception:
                        connection = channel = None
                continue
            if event is None:
                events.task_done()
                break
            for attempt in (1, 2):  # a second try on a fresh connection after a restart
                try:
                    if channel is None or not channel.is_open:
                        connection, channel = self._connect()
                    channel.basic_publish(
                        self.exchange, event.routing_key, event.to_json(), properties
                    )
                    break
                except Exception:
                    _close_quietly(connection)
                    connection = channel = None
                    if attempt == 2:
                        logger.warning(
                            "could not publish event %s", event.routing_key, exc_info=True
                        )
            events.task_done()
        _close_quietly(connection)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued event was handed to RabbitMQ (or given up on)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self.flush(2.0)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        thread.join(timeout=2.0)


def _close_quietly(connection: Any) -> None:
    if connection is None:
        return
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
