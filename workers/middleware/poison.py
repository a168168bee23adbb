"""Messages that can never succeed are dead-lettered at once, with the reason, instead of
being retried (or crashing anything): an unknown actor, arguments that do not fit the
actor's function, a payload over ``TICKWORK_MAX_MESSAGE_BYTES``.

Each gets a ``dead_letters`` row (queue, actor, reason, the message) for the admin API,
and is failed, so Dramatiq moves it to the queue's ``.XQ``. Messages that are not even
JSON never reach middleware: Dramatiq's consumer logs the decode error and dead-letters
them to ``.XQ`` itself.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from schema.messaging import DeadLetter
from workers.runtime import Runtime

logger = logging.getLogger(__name__)


class PoisonMiddleware(Middleware):
    def __init__(self, runtime: Callable[[], Runtime], max_message_bytes: int) -> None:
        self._runtime = runtime
        self.max_message_bytes = max_message_bytes

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        reason = self._why_poison(broker, message)
        if reason is None:
            return
        logger.error("dead-lettering message %s: %s", message.message_id, reason)
        try:
            with self._runtime().db.session() as session:
                session.add(
                    DeadLetter(
                        queue_name=message.queue_name,
                        message_id=message.message_id,
                        actor_name=str(message.actor_name)[:200],
                        reason=reason,
                        message=_storable(message),
                    )
                )
        except Exception:
            logger.exception("could not record dead letter %s", message.message_id)
        message.fail()

    def _why_poison(self, broker: dramatiq.Broker, message: MessageProxy) -> str | None:
        size = len(message.encode())
        if size > self.max_message_bytes:
            return f"payload of {size} bytes exceeds TICKWORK_MAX_MESSAGE_BYTES"
        try:
            actor = broker.get_actor(message.actor_name)
        except dramatiq.errors.ActorNotFound:
            return f"unknown actor {message.actor_name!r}"
        if not isinstance(message.args, list | tuple) or not isinstance(message.kwargs, dict):
            return "args must be a list and kwargs an object"
        try:
            inspect.signature(actor.fn).bind(*message.args, **message.kwargs)
        except TypeError as exc:
            return f"arguments do not fit {actor.actor_name}: {exc}"
        return None


def _storable(message: MessageProxy) -> dict[str, Any]:
    """The message as JSON, cut down if huge (the reason says how big it was)."""
    data = message.asdict()
    text = json.dumps(data, default=str)
    if len(text) > 10_000:
        return {"truncated": text[:10_000]}
    return dict(json.loads(text))
