"""The one way tickwork puts a message on a broker.

Every sender goes through here: the service client (:mod:`producers.client`), the
ticker, the dispatcher sending scheduled runs, and workers sending follow-up work
(``enqueuer`` → ``run_flows``, a failed scratch org → ``delete_scratch_org``). A message
is built from names alone (:data:`tickwork.contracts.CATALOGUE` says the queue), so a
sender never needs the workers' actors; Dramatiq's RabbitMQ broker declares the queue
on first enqueue.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Message

from tickwork.contracts import CATALOGUE, Contract, actor_for, encode
from tickwork.errors import ConfigError
from tickwork.rabbitmq import FreshConnectionsRabbitmqBroker, broker_options
from tickwork.settings import Settings


def message_for(
    settings: Settings,
    actor_name: str,
    queue: str,
    kwargs: dict[str, Any] | None = None,
    *,
    message_id: str | None = None,
    **options: Any,
) -> Message[Any]:
    """A message for ``actor_name`` on logical ``queue`` (prefixed by the settings)."""
    message: Message[Any] = Message(
        queue_name=settings.queue(queue),
        actor_name=actor_name,
        args=(),
        kwargs=kwargs or {},
        options=options,
    )
    if message_id:
        message = message.copy(message_id=message_id)
    return message


def catalogue_message(
    settings: Settings, actor_name: str, kwargs: dict[str, Any] | None = None, **options: Any
) -> Message[Any]:
    """A message of the catalogue, on the queue the catalogue names for it."""
    entry = CATALOGUE[actor_name]
    return message_for(settings, entry.actor_name, entry.queue, kwargs, **options)


def payload_message(settings: Settings, payload: Contract) -> Message[Any]:
    """The message carrying ``payload`` (a contract of the catalogue) to its actor."""
    return catalogue_message(settings, actor_for(payload), encode(payload))


def send(broker: dramatiq.Broker, message: Message[Any], delay_ms: int | None = None) -> str:
    """Enqueue ``message`` (after ``delay_ms``); returns its message id."""
    broker.enqueue(message, delay=delay_ms or None)
    return str(message.message_id)


def publish(
    broker: dramatiq.Broker, settings: Settings, payload: Contract, delay_ms: int | None = None
) -> str:
    """Send ``payload`` to its actor; returns the message id."""
    return send(broker, payload_message(settings, payload), delay_ms)


def sender_broker(settings: Settings) -> dramatiq.Broker:
    """A broker for a process that only sends (a service, the ticker): RabbitMQ with
    publisher confirms as configured, no worker middleware."""
    if settings.embedded_broker:
        raise ConfigError(
            "TICKWORK_BROKER_URL: sending from another process needs RabbitMQ (amqp://...); "
            "in the embedded mode, send through the running system's broker"
        )
    return FreshConnectionsRabbitmqBroker(middleware=[], **broker_options(settings))
