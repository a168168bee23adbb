"""Queue depth at scrape time: each queue, its delay queue and its dead-letter queue.

On RabbitMQ, Dramatiq declares ``Q``, ``Q.DQ`` (delayed, e.g. retries with a backoff)
and ``Q.XQ`` (dead letters); a passive declare returns a queue's *ready* message count
without creating or changing anything (messages a worker holds unacknowledged are not
counted — see PITFALLS.md). In the embedded mode the StubBroker's in-memory queues are
read directly. The ``queue`` label is the logical name (``default``, ``long``...),
without the deployment's queue prefix, so dashboards and alerts work everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dramatiq

from tickwork import queues
from tickwork.settings import Settings

if TYPE_CHECKING:
    from prometheus_client.core import Metric

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class QueueDepth:
    queue: str  # logical name
    ready: int
    delayed: int
    dead: int
    consumers: int | None  # None when the broker cannot tell (StubBroker)


class QueueDepthCollector:
    """A custom collector: asks the broker for queue depths on every scrape."""

    def __init__(self, settings: Settings, broker: dramatiq.Broker | None = None) -> None:
        self._settings = settings
        self._broker = broker

    def depths(self) -> list[QueueDepth]:
        from dramatiq.brokers.stub import StubBroker

        if isinstance(self._broker, StubBroker):
            return _stub_depths(self._settings, self._broker)
        if self._settings.embedded_broker:
            return []  # in-process broker of another process: nothing to ask
        return _rabbitmq_depths(self._settings)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        ready = GaugeMetricFamily(
            "tickwork_queue_messages",
            "Messages ready in the queue, waiting for a worker.",
            labels=["queue"],
        )
        delayed = GaugeMetricFamily(
            "tickwork_queue_delayed_messages",
            "Messages in the queue's delay queue (Q.DQ): retries and future slots.",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "tickwork_queue_dead_letters",
            "Messages in the queue's dead-letter queue (Q.XQ).",
            labels=["queue"],
        )
        consumers = GaugeMetricFamily(
            "tickwork_queue_consumers",
            "Consumers attached to the queue (RabbitMQ only).",
            labels=["queue"],
        )
        for depth in self.depths():
            ready.add_metric([depth.queue], depth.ready)
            delayed.add_metric([depth.queue], depth.delayed)
            dead.add_metric([depth.queue], depth.dead)
            if depth.consumers is not None:
                consumers.add_metric([depth.queue], depth.consumers)
        yield ready
        yield delayed
        yield dead
        yield consumers

    def describe(self) -> list[Any]:
        return []


def _stub_depths(settings: Settings, broker: Any) -> list[QueueDepth]:
    out = []
    for logical in queues.ALL:
        name = settings.queue(logical)
        if name not in broker.queues:
            continue
        delay_queue = broker.queues.get(f"{name}.DQ")
        out.append(
            QueueDepth(
                queue=logical,
                ready=broker.queues[name].qsize(),
                delayed=delay_queue.qsize() if delay_queue is not None else 0,
                dead=len(broker.dead_letters_by_queue.get(name, ())),
                consumers=None,
            )
        )
    return out


def _rabbitmq_depths(settings: Settings) -> list[QueueDepth]:
    from pika.exceptions import ChannelClosedByBroker

    from tickwork.rabbitmq import connect  # pika only for a RabbitMQ broker

    connection = connect(settings.broker_urls, timeout_s=CONNECT_TIMEOUT_S)
    try:
        channel = connection.channel()

        def count(name: str) -> tuple[int, int] | None:
            nonlocal channel
            try:
                frame = channel.queue_declare(name, passive=True)
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                channel = connection.channel()  # a 404 closes the channel
                return None
            return int(frame.method.message_count), int(frame.method.consumer_count)

        out = []
        for logical in queues.ALL:
            name = settings.queue(logical)
            main = count(name)
            if main is None:
                continue  # not declared yet: no worker or producer has used it
            delayed = count(f"{name}.DQ")
            dead = count(f"{name}.XQ")
            out.append(
                QueueDepth(
                    queue=logical,
                    ready=main[0],
                    delayed=delayed[0] if delayed else 0,
                    dead=dead[0] if dead else 0,
                    consumers=main[1],
                )
            )
        return out
    finally:
        if connection.is_open:
            connection.close()
