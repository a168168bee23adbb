"""Dead letters with their reason, for every message that can never be processed.

Two places refuse messages: the poison middleware (a well-formed message for an unknown
actor, with arguments that do not fit, or too big) and, before any middleware, the
broker's consumer, for bodies that are not a Dramatiq message at all (not JSON, not an
object, fields missing or of the wrong type). Dramatiq's own consumer only logs the
latter and nacks them; :class:`DeadLetteringConsumer` also records why, so the admin
API shows every dead letter with its reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import uuid
from typing import Any

from dramatiq.brokers.rabbitmq import _RabbitmqConsumer, _RabbitmqMessage
from sqlalchemy import select

from schema.messaging import DeadLetter
from schema.scheduling import JobRun
from tickwork import queues
from tickwork.clock import utcnow
from tickwork.rabbitmq import FreshConnectionsRabbitmqBroker, connect
from tickwork.scrub import scrub
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


BODY_SIZE_ATTRIBUTE = "_tickwork_body_size"  # on a received MessageProxy: its body's bytes


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
            setattr(message, BODY_SIZE_ATTRIBUTE, len(body))  # the size check needs no encode
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


# --- dead letters the broker keeps --------------------------------------------------
#
# Dramatiq dead-letters messages itself: after their last retry, when older than the
# message age limit, or when refused by a middleware. On RabbitMQ they land in the
# queue's ``.XQ`` (where the queue metric counts them, and where they expire after
# Dramatiq's dead-message TTL); the StubBroker keeps them in a list. The dead-letters
# table is the one store the API, the CLI and the page read: :func:`collect_broker_dead_letters`
# moves those messages into it. A message leaves the broker only after its row (or the
# row a worker already wrote for it) is committed; if anything fails before, the
# unacknowledged messages go back to the ``.XQ`` when the connection closes.

UNKNOWN_FAILURE = "too old or retries exhausted"
COLLECT_BATCH = 500
COLLECT_LIMIT = 10_000
CONNECT_TIMEOUT_S = 5.0
_RETRY_STATE = ("retries", "traceback", "eta", "requeue_timestamp")


def broker_queue_names(settings: Any, broker: Any = None) -> list[str]:
    """The real names of the queues tickwork declares (prefixed), and any other queue
    ``broker`` has declared (not its delay or dead-letter queues)."""

    names = [settings.queue(q) for q in queues.ALL]
    declared = broker.get_declared_queues() if broker is not None else set()
    for name in sorted(declared):
        if not name.endswith((".DQ", ".XQ")) and name not in names:
            names.append(name)
    return names


DELIVERY_LIMIT = "delivery_limit"  # x-death reason of a quorum queue's delivery limit


def failure_reason(
    session: Any,
    data: dict[str, Any],
    last_error: str | None = None,
    death: tuple[str, int | None] | None = None,
) -> str:
    """Why Dramatiq dead-lettered ``data`` (a message as a dict) on its own. RabbitMQ
    keeps no reason: a message retried carries its retry count and the traceback of the
    attempt before the last; the run record of a job says how it ended. The StubBroker
    keeps the last exception (``last_error``)."""

    parts = [UNKNOWN_FAILURE]
    if death is not None and death[0] == DELIVERY_LIMIT:
        times = f"{death[1]} times" if death[1] else "too often"
        parts = [
            f"delivered {times} without an outcome: RabbitMQ's delivery limit "
            "(TICKWORK_QUEUE_DELIVERY_LIMIT; its worker died each time)"
        ]
    options = data.get("options") if isinstance(data.get("options"), dict) else {}
    assert isinstance(options, dict)
    trace = options.get("traceback")
    retries = options.get("retries")
    if retries:
        parts.append(f"retried {retries} time(s)")
    if last_error:
        parts.append(f"last error: {scrub(last_error)}")
    elif isinstance(trace, str) and trace.strip():
        parts.append(f"last error: {scrub(trace.strip().splitlines()[-1])}")
    run = run_of(session, data)
    if run is not None:
        error = (run.error or run.skip_reason or "").strip().splitlines()
        parts.append(f"run #{run.id} {run.status}" + (f": {error[-1]}" if error else ""))
    return _text("; ".join(parts), MAX_STORED_CHARS)


def run_of(session: Any, data: dict[str, Any]) -> JobRun | None:
    """The run record a dead-lettered message (as a dict) belongs to, if any."""
    kwargs = data.get("kwargs") if isinstance(data.get("kwargs"), dict) else {}
    assert isinstance(kwargs, dict)
    run_id = kwargs.get("run_id")
    if isinstance(run_id, int) and not isinstance(run_id, bool):
        found: JobRun | None = session.get(JobRun, run_id)
        return found
    if isinstance(data.get("message_id"), str):
        by_message: JobRun | None = session.scalar(
            select(JobRun).where(JobRun.message_id == data["message_id"])
        )
        return by_message
    return None


def _fail_dead_lettered_run(session: Any, data: dict[str, Any], reason: str) -> None:
    """RabbitMQ's delivery limit dead-lettered the message of a run whose workers kept
    dying: its message will not come again, so the run ends now (failed, with the
    reason) instead of staying ``running`` until the dispatcher reaps it."""
    run = run_of(session, data)
    if run is None or run.status not in ("queued", "running"):
        return
    run.status = "canceled" if run.cancel_requested_at else "failed"
    run.finished_at = utcnow()
    run.error = f"dead-lettered by RabbitMQ: {reason}"


def _scrubbed(data: dict[str, Any]) -> dict[str, Any]:
    """The message as stored: its traceback option without credentials."""

    options = data.get("options")
    if isinstance(options, dict) and isinstance(options.get("traceback"), str):
        data = {**data, "options": {**options, "traceback": scrub(options["traceback"])}}
    return data


# (body or message as a dict, dead-lettered at, RabbitMQ's reason and delivery count)
Item = tuple[bytes | dict[str, Any], Any, tuple[str, int | None] | None]
LAST_ERROR = "__last_error__"  # key of a StubBroker message's exception in its dict


def _store_batch(db: Any, queue_name: str, items: list[Item]) -> int:
    """One transaction: a row for each ``(body or message dict, dead-lettered at)`` that
    has none yet (a worker that refused a message wrote one before it was nacked: that
    row, with its better reason, stands for it). Returns the rows added."""

    added = 0
    with db.session() as session:
        existing = set(
            session.scalars(
                select(DeadLetter.message_id).where(DeadLetter.queue_name == queue_name)
            )
        )
        malformed: list[dict[str, Any]] | None = None
        for item, died_at, death in items:
            last_error = None
            if isinstance(item, dict):
                data: Any = dict(item)
                last_error = data.pop(LAST_ERROR, None)
                why = None
            else:
                why = why_malformed(item, queue_name)
                try:
                    data = json.loads(item)
                except (UnicodeDecodeError, ValueError):
                    data = {"body": repr(item[:MAX_STORED_CHARS])}
            message_id = data.get("message_id") if isinstance(data, dict) else None
            stored = storable(_scrubbed(data) if isinstance(data, dict) else {"value": data})
            if isinstance(message_id, str) and message_id:
                message_id = _text(message_id, 64)
                if message_id in existing:
                    continue
            else:  # no id of its own: a row the consumer wrote has the same content
                if malformed is None:
                    malformed = [
                        row.message
                        for row in session.scalars(
                            select(DeadLetter).where(
                                DeadLetter.queue_name == queue_name,
                                DeadLetter.message_id.like("malformed-%"),
                            )
                        )
                    ]
                if stored in malformed:
                    continue
                malformed.append(stored)
                message_id = f"malformed-{uuid.uuid4()}"
            existing.add(message_id)
            actor = data.get("actor_name") if isinstance(data, dict) else None
            reason = (
                f"body is not a message: {why}"
                if why is not None and not why.startswith("message names queue")
                else failure_reason(
                    session, data if isinstance(data, dict) else {}, last_error, death
                )
            )
            if death is not None and death[0] == DELIVERY_LIMIT and isinstance(data, dict):
                _fail_dead_lettered_run(session, data, reason)
            session.add(
                DeadLetter(
                    queue_name=_text(queue_name, 200),
                    message_id=message_id,
                    actor_name=_text(actor, 200) if isinstance(actor, str) else UNDECODABLE_ACTOR,
                    reason=reason,
                    message=stored,
                    created_at=died_at or utcnow(),
                )
            )
            added += 1
    return added


def collect_broker_dead_letters(
    settings: Any, db: Any, broker: Any = None, limit: int = COLLECT_LIMIT
) -> int:
    """Move the dead letters ``broker`` keeps (RabbitMQ's ``.XQ`` queues, or the
    StubBroker's list) into the dead-letters table; the number of messages taken.

    Nothing is lost: a message is removed from the broker only once its row is
    committed. In the embedded mode only a StubBroker of this process can be read (the
    API of `tickwork run` shares its worker's); another process's is out of reach."""
    from dramatiq.brokers.stub import StubBroker

    if isinstance(broker, StubBroker):
        return _collect_stub(settings, db, broker, limit)
    if settings.embedded_broker:
        return 0
    return _collect_rabbitmq(settings, db, broker, limit)


def _collect_stub(settings: Any, db: Any, broker: Any, limit: int) -> int:
    taken = 0
    for name in broker_queue_names(settings, broker):
        letters = broker.dead_letters_by_queue.get(name)
        if not letters:
            continue
        batch = list(letters)[: max(0, limit - taken)]
        if not batch:
            break
        items: list[Item] = []
        for proxy in batch:
            data = dict(proxy._message.asdict())
            exception = getattr(proxy, "_exception", None)
            if exception is not None:
                data[LAST_ERROR] = f"{type(exception).__name__}: {exception}"
            items.append((data, None, None))
        _store_batch(db, name, items)
        for proxy in batch:  # committed: now they may leave the broker's list
            with contextlib.suppress(ValueError):  # gone already (another collector)
                letters.remove(proxy)
        taken += len(batch)
    return taken


def _collect_rabbitmq(settings: Any, db: Any, broker: Any, limit: int) -> int:
    from pika.exceptions import ChannelClosedByBroker

    connection = connect(settings.broker_urls, timeout_s=CONNECT_TIMEOUT_S)
    taken = 0
    try:
        channel = connection.channel()
        for name in broker_queue_names(settings, broker):
            dead_queue = f"{name}.XQ"
            try:
                waiting = int(channel.queue_declare(dead_queue, passive=True).method.message_count)
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
                channel = connection.channel()  # not declared yet; a 404 closes the channel
                continue
            while waiting > 0 and taken < limit:
                batch: list[Item] = []
                last_tag = None
                while len(batch) < min(COLLECT_BATCH, waiting, limit - taken):
                    method, properties, body = channel.basic_get(dead_queue, auto_ack=False)
                    if method is None:
                        break
                    last_tag = method.delivery_tag
                    batch.append((body, _dead_lettered_at(properties), _death(properties)))
                if last_tag is None:
                    break
                _store_batch(db, name, batch)  # raises: the connection closes, all go back
                channel.basic_ack(last_tag, multiple=True)
                taken += len(batch)
                waiting -= len(batch)
    finally:
        if connection.is_open:
            connection.close()
    return taken


def _dead_lettered_at(properties: Any) -> Any:
    """When RabbitMQ dead-lettered the message (its ``x-death`` header), or None."""
    import datetime as dt

    deaths = (getattr(properties, "headers", None) or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        when = deaths[0].get("time")
        if isinstance(when, dt.datetime):
            return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when
    return None


def _death(properties: Any) -> tuple[str, int | None] | None:
    """Why RabbitMQ dead-lettered the message (its last ``x-death`` reason: rejected,
    expired, delivery_limit...) and how often a quorum queue had delivered it."""
    headers = getattr(properties, "headers", None) or {}
    deaths = headers.get("x-death")
    if not (isinstance(deaths, list) and deaths and isinstance(deaths[0], dict)):
        return None
    reason = deaths[0].get("reason")
    reason = reason.decode() if isinstance(reason, bytes) else str(reason or "")
    count = headers.get("x-delivery-count")
    return reason, count if isinstance(count, int) and not isinstance(count, bool) else None


def without_retry_state(options: dict[str, Any]) -> dict[str, Any]:
    """A dead message's options for sending it again: retry count, last traceback and
    delay dropped (retries start over)."""
    return {k: v for k, v in options.items() if k not in _RETRY_STATE}


__all__ = [
    "UNKNOWN_FAILURE",
    "DeadLetteringConsumer",
    "DeadLetteringRabbitmqBroker",
    "broker_queue_names",
    "collect_broker_dead_letters",
    "failure_reason",
    "record_dead_letter",
    "storable",
    "why_malformed",
    "without_retry_state",
]
