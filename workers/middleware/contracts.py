"""Messages for contract actors are validated on receipt; a bad one is dead-lettered.

The reason goes to the ``dead_letters`` table (what was wrong, the whole message) and
the message itself is failed — nacked to the queue's ``.XQ`` on RabbitMQ — without
ever reaching the actor: no crash, no retry loop. A good one is decoded once, here:
the actor reads the typed payload with :func:`current_payload` (as Dramatiq's
``CurrentMessage`` hands out the message), never parsing its kwargs again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from schema.messaging import DeadLetter
from tickwork.contracts import CONTRACTS, Contract, decode
from tickwork.errors import ValidationError
from workers.runtime import Runtime

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=Contract)
_local = threading.local()


def current_payload(model: type[C]) -> C:
    """The payload of the message this worker thread is processing, as ``model``."""
    payload = getattr(_local, "payload", None)
    if not isinstance(payload, model):
        raise RuntimeError(
            f"no {model.__name__} payload in this thread (is ContractMiddleware installed?)"
        )
    return payload


class ContractMiddleware(Middleware):
    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.actor_name not in CONTRACTS:
            return
        try:
            _local.payload = decode(message.actor_name, message.args, message.kwargs)
        except ValidationError as exc:
            reason = str(exc)
            logger.error("message %s dead-lettered: %s", message.message_id, reason)
            self._record(message, reason)
            message.fail()
            raise SkipMessage(reason) from None

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        _local.payload = None

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        _local.payload = None

    def _record(self, message: MessageProxy, reason: str) -> None:
        try:
            with self._runtime().db.session() as session:
                session.add(
                    DeadLetter(
                        queue_name=message.queue_name,
                        message_id=message.message_id,
                        actor_name=message.actor_name,
                        reason=reason,
                        message=dict(message.asdict()),
                    )
                )
        except Exception:  # the message is still failed; the log has the reason
            logger.exception("could not record dead letter %s", message.message_id)
