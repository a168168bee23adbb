"""Dead letters with their reason, for every message that can never be processed.

Two places refuse messages: the poison middleware (a well-formed message for an unknown
actor, with arguments that do not fit, or too big) and, before any middleware, the
broker's consumer, for bodies that are not a Dramatiq message at all (not JSON, not an
object, fields missing or of the wrong type). Dramatiq's own consumer only logs the
latter and nacks them; :class:`DeadLetteringConsumer` also records why, so the admin
API shows every dead letter with its reason.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from typing import Any

from dramatiq.brokers.rabbitmq import _RabbitmqConsumer, _RabbitmqMessage

from schema.messaging import DeadLetter
from tickwork.rabbitmq import FreshConnectionsRabbitmqBroker
from workers.runtime import get_runtime

logger = logging.getLogger(__name__)

MAX_STORED_CHARS = 10_000
UNDECODABLE_ACTOR = "(undecodable)"


def _text(value: Any, limit: int) -> str:
    """What PostgreSQL can store: no NUL, no lone surrogate; column widths are limits."""
    text = str(value).replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def _storable_value(value: Any) -> Any:
    """JSON PostgreSQL accepts: strings cleaned, no Infinity/NaN, anything else as text."""
    if isinstance(value, dict):
        return {_text(k, MAX_STORED_CHARS): _storable_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(value, MAX_STORED_CHARS)


def storable(data: Any) -> dict[str, Any]:
    """A JSON object for the ``message`` column, cut down if huge."""
    text = json.dumps(_storable_value(data), allow_nan=False)
    if len(text) > MAX_STORED_CHARS:
        return {"truncated": text[:MAX_STORED_CHARS]}
    loaded = json.loads(text)
    return loaded if isinstance(loaded, dict) else {"value": loaded}


def record_dead_letter(
    db: Any, *, queue_name: str, message_id: str, actor_name: str, reason: str, message: Any
) -> None:
    """Write one ``dead_letters`` row; never raises (the message is failed regardless)."""
    try:
        with db.session() as session:
            session.add(
                DeadLetter(
                    queue_name=_text(queue_name, 200),
                    message_id=_text(message_id, 64),
                    actor_name=_text(actor_name, 200),
                    reason=_text(reason, MAX_STORED_CHARS),
                    message=storable(message),
                )
            )
    except Exception:
        logger.exception("could not record dead letter %s (%s)", message_id, reason)


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "queue_name": str,
    "actor_name": str,
    "args": (list, tuple),
    "kwargs": dict,
    "options": dict,
    "message_id": str,
    "message_timestamp": int,
}


def why_malformed(body: bytes, queue_name: str) -> str | None:
    """Why ``body``, consumed from ``queue_name``, is not a message this system can
    process, or None if it is one. Dramatiq trusts these fields: a wrong queue name
    would send the ack to no consumer, a text ``eta`` would crash the delay thread."""
    try:
        fields = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        return f"body is not JSON: {exc}"
    if not isinstance(fields, dict):
        return f"body is JSON {type(fields).__name__}, not an object"
    missing = sorted(set(_FIELD_TYPES) - set(fields))
    if missing:
        return f"message lacks {', '.join(missing)}"
    for name, expected in _FIELD_TYPES.items():
        value = fields[name]
        if not isinstance(value, expected) or isinstance(value, bool):
            return f"message field {name!r} is {type(value).__name__}, not the expected type"
    if not fields["message_id"] or len(fields["message_id"]) > 64:
        return "message_id must be 1 to 64 characters"
    if fields["queue_name"] != queue_name:
        return f"message names queue {fields['queue_name'][:200]!r} but came from {queue_name!r}"
    for option in ("eta", "retries", "max_retries", "time_limit", "max_age"):
        value = fields["options"].get(option)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            return f"option {option!r} must be an integer"
    return None


class DeadLetteringConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer, refusing malformed bodies with a recorded reason.

    ``__next__`` follows Dramatiq 2.x's own (connection errors are its business); only
    the decoding differs: a body that is not a well-formed message is nacked to the
    queue's ``.XQ`` and a ``dead_letters`` row says why.
    """

    def __next__(self) -> _RabbitmqMessage | None:
        iterator = self.iterator
        self.iterator = _Remember(iterator, self)
        self._delivery: Any = None
        self._thread_id = threading.get_ident()
        try:
            return self._next_checked()
        finally:
            self.iterator = iterator
            self._delivery = None  # later nacks (from worker threads) are not decode errors

    def _next_checked(self) -> _RabbitmqMessage | None:
        message: _RabbitmqMessage | None = super().__next__()  # type: ignore[no-untyped-call]
        delivery = self._delivery
        if delivery is None:
            return message  # idle, or already refused by Dramatiq (see _nack)
        method, _properties, body = delivery
        reason = why_malformed(body, self.queue_name)
        if reason is None and message is not None:
            actor_name = message.actor_name
            if actor_name not in self.broker.actors:  # Dramatiq would only log it
                reason = f"unknown actor {actor_name!r}"
        if reason is None:
            return message
        if message is not None:
            self.known_tags.discard(method.delivery_tag)
            super()._nack(method.delivery_tag)  # type: ignore[no-untyped-call]
        self._refuse(body, reason)
        return None

    def _nack(self, tag: int) -> None:
        # Dramatiq nacks an undecodable body from inside __next__ (this consumer's thread,
        # the delivery just taken): note why, then nack.
        delivery = getattr(self, "_delivery", None)
        if (
            delivery is not None
            and delivery[0].delivery_tag == tag
            and threading.get_ident() == self._thread_id
        ):
            self._delivery = None
            reason = why_malformed(delivery[2], self.queue_name)
            self._refuse(delivery[2], reason or "body could not be decoded")
        super()._nack(tag)  # type: ignore[no-untyped-call]

    def _refuse(self, body: bytes, reason: str) -> None:
        logger.error("dead-lettering a malformed message on %s: %s", self.queue_name, reason)
        try:
            data: Any = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            data = {"body": repr(body[:MAX_STORED_CHARS])}
        actor = data.get("actor_name") if isinstance(data, dict) else None
        message_id = data.get("message_id") if isinstance(data, dict) else None
        record_dead_letter(
            get_runtime().db,
            queue_name=self.queue_name,
            message_id=message_id if isinstance(message_id, str) else f"malformed-{uuid.uuid4()}",
            actor_name=actor if isinstance(actor, str) else UNDECODABLE_ACTOR,
            reason=reason,
            message=data if isinstance(data, dict) else {"value": data},
        )


class DeadLetteringRabbitmqBroker(FreshConnectionsRabbitmqBroker):
    """Dramatiq's RabbitMQ broker with :class:`DeadLetteringConsumer`."""

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return DeadLetteringConsumer


class _Remember:
    """Wraps pika's consume iterator to keep the delivery Dramatiq is about to decode."""

    def __init__(self, inner: Any, consumer: DeadLetteringConsumer) -> None:
        self.inner = inner
        self.consumer = consumer

    def __iter__(self) -> _Remember:
        return self

    def __next__(self) -> Any:
        item = next(self.inner)
        if item is not None and item[0] is not None:
            self.consumer._delivery = item
        return item


__all__ = [
    "DeadLetteringConsumer",
    "DeadLetteringRabbitmqBroker",
    "record_dead_letter",
    "storable",
    "why_malformed",
]
