"""What publishes ticks: periodiq in production, a small thread in the embedded mode.

Both send the same ``tick`` message with a ``scheduled_at`` option, so the dispatcher
cannot tell them apart. periodiq is used only for the tick: per-job schedules live
in tickwork (periodiq has no seconds, no catch-up and a Sunday bug).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
from periodiq import cron

from tickwork.clock import utcnow
from tickwork.contracts import CATALOGUE, TICK
from tickwork.publish import catalogue_message, send
from tickwork.schedules import floor_minute
from tickwork.settings import Settings

logger = logging.getLogger(__name__)


def send_tick(broker: dramatiq.Broker, settings: Settings) -> None:
    """Send the tick of the current minute."""
    minute = floor_minute(utcnow())
    send(broker, catalogue_message(settings, TICK, scheduled_at=minute.isoformat()))


def _published_not_run_here(**_: Any) -> None:
    raise RuntimeError("the tick runs in a worker (workers.scheduler.actors), not the ticker")


def declare_tick_actor(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Actor[Any, Any]:
    """The tick as periodiq needs it: an actor with a ``periodic`` option on ``broker``.

    In the scheduler process it only publishes; a broker that already has the workers'
    tick actor (the embedded system) keeps it.
    """
    if TICK in broker.actors:
        return broker.get_actor(TICK)
    declare = dramatiq.actor(
        actor_name=TICK,
        queue_name=settings.queue(CATALOGUE[TICK].queue),
        broker=broker,
        periodic=cron("* * * * *"),
    )
    actor: dramatiq.Actor[Any, Any] = declare(_published_not_run_here)
    return actor


class EmbeddedTicker(threading.Thread):
    """Sends a tick now and at the start of every minute until stopped."""

    def __init__(self, broker: dramatiq.Broker, settings: Settings) -> None:
        super().__init__(name="tickwork-ticker", daemon=True)
        self.broker = broker
        self.settings = settings
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                send_tick(self.broker, self.settings)
            except Exception:
                logger.exception("could not send tick; trying again next minute")
            now = time.time()
            self._stop.wait(60 - now % 60 + 0.05)

    def stop(self) -> None:
        self._stop.set()


TICK_SEND_PATIENCE_S = 45.0  # keep trying within the minute; the next tick catches up


def send_tick_patiently(actor: Any, scheduled_at: str, patience_s: float) -> bool:
    """Send one tick, retrying while the broker is away (a restart takes seconds).

    periodiq sends without catching anything, so one failed publish would end the
    scheduler process. Here a tick that still cannot be sent after ``patience_s`` is
    given up on, loudly: the next tick dispatches its slots by the catch-up policy.
    """
    deadline = time.monotonic() + patience_s
    pause_s = 0.5
    while True:
        try:
            actor.send_with_options(scheduled_at=scheduled_at)
            return True
        except Exception as exc:
            if time.monotonic() + pause_s > deadline:
                logger.error(
                    "tick %s NOT sent, broker unreachable for %.0f s (%s); the next tick "
                    "dispatches the missed slots by each job's catch-up policy",
                    scheduled_at,
                    patience_s,
                    exc,
                )
                return False
            logger.warning("could not send tick %s (%s); retrying", scheduled_at, exc)
            time.sleep(pause_s)
            pause_s = min(pause_s * 2, 8.0)


def run_periodiq(broker: dramatiq.Broker, settings: Settings) -> None:
    """Run periodiq's scheduler for the tick actor (blocks; uses SIGALRM)."""
    from periodiq import Scheduler

    class PatientScheduler(Scheduler):  # type: ignore[misc]
        def send_actors(self, actors: list[Any], now: Any) -> None:
            for actor in actors:
                logger.info("Scheduling %s at %s.", actor, now)
                send_tick_patiently(actor, str(now), TICK_SEND_PATIENCE_S)

    actor = declare_tick_actor(broker, settings)
    scheduler = PatientScheduler(actors=[actor])
    logger.info("periodiq scheduler started: publishing %r every minute", TICK)
    scheduler.schedule()
    scheduler.loop()
