"""What publishes ticks: periodiq in production, a small thread in the embedded mode.

Both send the same ``tick`` message with a ``scheduled_at`` option, so the dispatcher
cannot tell them apart. periodiq is used only for the tick: per-job schedules live
in tickwork (periodiq has no seconds, no catch-up and a Sunday bug).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
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

    A process that only publishes declares it here (its function never runs there); a
    broker that already has the workers' tick actor keeps it.
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


def send_tick_patiently(
    actor: Any,
    scheduled_at: str,
    patience_s: float,
    stopping: Callable[[], bool] = lambda: False,
) -> bool:
    """Send one tick, retrying while the broker is away (a restart takes seconds).

    periodiq sends without catching anything, so one failed publish would end the
    scheduler process. Here a tick that still cannot be sent after ``patience_s`` is
    given up on, loudly: the next tick dispatches its slots by the catch-up policy.
    A stop request (SIGTERM) ends the retries too.
    """
    deadline = time.monotonic() + patience_s
    pause_s = 0.5
    while True:
        try:
            actor.send_with_options(scheduled_at=scheduled_at)
            return True
        except Exception as exc:
            if stopping():
                logger.warning("tick %s NOT sent (%s): stopping", scheduled_at, exc)
                return False
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
            _sleep_unless(stopping, pause_s)
            pause_s = min(pause_s * 2, 8.0)


POLL_S = 0.2  # how quickly the loop notices the alarm or a stop request


def _sleep_unless(stopping: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopping() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, POLL_S))


def run_periodiq(
    broker: dramatiq.Broker,
    settings: Settings,
    stop_on: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> str:
    """Run periodiq's scheduler for the tick actor until one of ``stop_on`` arrives.

    Blocks (main thread only: periodiq wakes up by SIGALRM). Returns the name of the
    signal that stopped it, after the tick being sent (if any) is sent. periodiq's own
    loop cannot be stopped: it blocks on a queue that its SIGALRM handler fills (from a
    signal handler, which can deadlock on the queue's lock). Here the handlers only set
    flags, and the loop polls them.
    """
    from periodiq import Scheduler

    class PatientScheduler(Scheduler):  # type: ignore[misc]
        def __init__(self, actors: list[Any]) -> None:
            super().__init__(actors)
            self.stop_signal: str | None = None
            self.alarm_rang = False

        def stopping(self) -> bool:
            return self.stop_signal is not None

        def request_stop(self, signum: int, _frame: object) -> None:
            self.stop_signal = signal.Signals(signum).name

        def signal_handler(self, *_: object) -> None:  # SIGALRM: the next minute is due
            self.alarm_rang = True

        def loop(self) -> None:
            while not self.stopping():
                # schedule() itself queues an immediate run when the next one is < 1 s away.
                if self.alarm_rang or not self.alarm_q.empty():
                    self.alarm_rang = False
                    while not self.alarm_q.empty():
                        self.alarm_q.get_nowait()
                    self.schedule()
                else:
                    time.sleep(POLL_S)

        def send_actors(self, actors: list[Any], now: Any) -> None:
            for actor in actors:
                if self.stopping():
                    return
                logger.info("Scheduling %s at %s.", actor, now)
                send_tick_patiently(actor, str(now), TICK_SEND_PATIENCE_S, self.stopping)

    actor = declare_tick_actor(broker, settings)
    scheduler = PatientScheduler(actors=[actor])
    previous = {signum: signal.signal(signum, scheduler.request_stop) for signum in stop_on}
    logger.info("periodiq scheduler started: publishing %r every minute", TICK)
    try:
        scheduler.schedule()
        scheduler.loop()
    finally:
        signal.alarm(0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return scheduler.stop_signal or "stop"
