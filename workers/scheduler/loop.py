"""What publishes ticks: periodiq in production, a small thread in the embedded mode.

Both send the same ``tick`` message with a ``scheduled_at`` option, so the dispatcher
cannot tell them apart. periodiq is used only for the tick: per-job schedules live
in tickwork (periodiq has no seconds, no catch-up and a Sunday bug).
"""

from __future__ import annotations

import logging
import threading
import time

import dramatiq

from schema.base import utcnow
from workers.scheduler.actors import TICK_ACTOR
from workers.scheduler.dispatcher import floor_minute

logger = logging.getLogger(__name__)


def send_tick(broker: dramatiq.Broker) -> None:
    minute = floor_minute(utcnow())
    broker.get_actor(TICK_ACTOR).send_with_options(scheduled_at=minute.isoformat())


class EmbeddedTicker(threading.Thread):
    """Sends a tick now and at the start of every minute until stopped."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        super().__init__(name="tickwork-ticker", daemon=True)
        self.broker = broker
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                send_tick(self.broker)
            except Exception:
                logger.exception("could not send tick; trying again next minute")
            now = time.time()
            self._stop.wait(60 - now % 60 + 0.05)

    def stop(self) -> None:
        self._stop.set()


def run_periodiq(broker: dramatiq.Broker) -> None:
    """Run periodiq's scheduler for the tick actor (blocks; uses SIGALRM)."""
    from periodiq import Scheduler

    actor = broker.get_actor(TICK_ACTOR)
    scheduler = Scheduler(actors=[actor])
    logger.info("periodiq scheduler started: publishing %r every minute", TICK_ACTOR)
    scheduler.schedule()
    scheduler.loop()
