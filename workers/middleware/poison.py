"""Messages that can never succeed are dead-lettered at once, with the reason, instead of
being retried (or crashing anything): an unknown actor, arguments that do not fit the
actor's function or whose values cannot be of the parameters' annotated types, a payload
over ``TICKWORK_MAX_MESSAGE_BYTES``.

Each gets a ``dead_letters`` row (queue, actor, reason, the message) for the admin API,
and is failed, so Dramatiq moves it to the queue's ``.XQ``. Bodies that are not even a
message never reach middleware: :mod:`workers.dead_letters` refuses them in the consumer.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import dramatiq
import pydantic
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from workers.dead_letters import BODY_SIZE_ATTRIBUTE, record_dead_letter
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
        record_dead_letter(
            self._runtime().db,
            queue_name=message.queue_name,
            message_id=message.message_id,
            actor_name=str(message.actor_name),
            reason=reason,
            message=message.asdict(),
        )
        message.options["tickwork_refused"] = reason  # the run, if any, fails with it
        message.fail()

    def _why_poison(self, broker: dramatiq.Broker, message: MessageProxy) -> str | None:
        # The size of the body as received, when the consumer noted it (no re-encoding).
        size = getattr(message, BODY_SIZE_ATTRIBUTE, None) or len(message.encode())
        if size > self.max_message_bytes:
            return f"payload of {size} bytes exceeds TICKWORK_MAX_MESSAGE_BYTES"
        try:
            actor = broker.get_actor(message.actor_name)
        except dramatiq.errors.ActorNotFound:
            return f"unknown actor {message.actor_name!r}"
        if not isinstance(message.args, list | tuple) or not isinstance(message.kwargs, dict):
            return "args must be a list and kwargs an object"
        try:
            bound = _signature(actor.fn).bind(*message.args, **message.kwargs)
        except TypeError as exc:
            return f"arguments do not fit {actor.actor_name}: {exc}"
        return _wrong_types(actor.actor_name, actor.fn, bound.arguments)


@functools.lru_cache(maxsize=512)
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


@functools.lru_cache(maxsize=512)
def _argument_types(fn: Callable[..., Any]) -> dict[str, pydantic.TypeAdapter[Any]]:
    """A validator per parameter of ``fn``'s (message) signature annotated with a real
    type; string annotations nobody resolved are left alone."""
    adapters = {}
    for name, param in inspect.signature(fn).parameters.items():
        hint = param.annotation
        if (
            hint is inspect.Parameter.empty
            or hint is Any
            or isinstance(hint, str)
            or param.kind is inspect.Parameter.VAR_KEYWORD
        ):
            continue
        try:
            adapters[name] = pydantic.TypeAdapter(hint, config=pydantic.ConfigDict(strict=True))
        except Exception:  # a type pydantic cannot check; the job sees what it gets
            continue
    return adapters


def _wrong_types(actor_name: str, fn: Callable[..., Any], arguments: dict[str, Any]) -> str | None:
    """Arguments whose JSON value cannot be the parameter's type: it would only fail
    inside the job, retry and fail again, so it is refused now, naming the argument."""
    for name, adapter in _argument_types(fn).items():
        if name not in arguments:
            continue
        try:
            adapter.validate_python(arguments[name])
        except pydantic.ValidationError as exc:
            problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            return f"argument {name!r} of {actor_name}: {problem}"
    return None
