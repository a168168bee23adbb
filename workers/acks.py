"""Acknowledge a job's message only once its run's outcome is committed.

"Nothing lost" rests on the ack, not on the worker thread waiting: RabbitMQ keeps an
unacknowledged message and gives it back if the worker dies. So a worker thread hands
the outcome to the run-record writer and moves on to its next message at once; the
message's ack (or nack) is held until the writer has committed the outcome, then sent
(pika's thread-safe callback does the sending on the consumer's connection). A worker
that dies in between has its message redelivered, and the redelivery finds the run
finished (dropped) or still running on nobody (taken over): never run twice, never lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from dramatiq.brokers.rabbitmq import _RabbitmqConsumer

logger = logging.getLogger(__name__)

OUTCOME_ATTRIBUTE = "_tickwork_outcome"  # on a MessageProxy: its Outcome, if deferred


class Outcome:
    """Done once a run's outcome is committed; runs callbacks then (once each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._callbacks: list[Callable[[], None]] = []

    def when_done(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        callback()

    def set_done(self) -> None:
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the connection went away: the broker redelivers
                logger.warning("could not acknowledge a message after its outcome", exc_info=True)


def defer(message: Any) -> Outcome:
    """Mark ``message``'s ack to wait for the returned :class:`Outcome`."""
    outcome = Outcome()
    setattr(message, OUTCOME_ATTRIBUTE, outcome)
    return outcome


class AcksAfterOutcome(_RabbitmqConsumer):
    """A RabbitMQ consumer whose ack/nack of a message waits for the message's outcome.

    Acks released by the writer are sent by the consumer's own thread, many per wake-up:
    one thread-safe callback per batch of outcomes rather than one per message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._ready_lock = threading.Lock()
        self._ready: list[tuple[Any, bool]] = []  # (message, nack)
        self._flush_scheduled = False

    def ack(self, message: Any) -> None:
        outcome: Outcome | None = getattr(message, OUTCOME_ATTRIBUTE, None)
        if outcome is None:
            super().ack(message)  # type: ignore[no-untyped-call]
        else:
            outcome.when_done(lambda: self._release(message, nack=False))

    def nack(self, message: Any) -> None:
        outcome: Outcome | None = getattr(message, OUTCOME_ATTRIBUTE, None)
        if outcome is None:
            super().nack(message)  # type: ignore[no-untyped-call]
        else:
            outcome.when_done(lambda: self._release(message, nack=True))

    def _release(self, message: Any, nack: bool) -> None:
        with self._ready_lock:
            self._ready.append((message, nack))
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self.connection.add_callback_threadsafe(self._send_ready)

    def _send_ready(self) -> None:
        """On the consumer's thread: ack or nack every message released so far."""
        with self._ready_lock:
            ready, self._ready = self._ready, []
            self._flush_scheduled = False
        for message, nack in ready:
            tag = message._tag
            if tag not in self.known_tags:  # from before a reconnect: redelivered anyway
                continue
            self.known_tags.discard(tag)
            if nack:
                self.channel.basic_nack(tag, requeue=False)
            else:
                self.channel.basic_ack(tag)
