"""The ``tick`` actor: periodiq publishes it every minute; it runs the dispatcher."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from periodiq import cron

from schema.base import utcnow
from tickwork.settings import Settings
from tickwork import queues
from workers.runtime import get_runtime
from workers.scheduler.dispatcher import DispatchReport, dispatch

logger = logging.getLogger(__name__)

TICK_ACTOR = "tick"

TickHook = Callable[[DispatchReport, dt.datetime], None]
_tick_hooks: list[TickHook] = []


def add_tick_hook(hook: TickHook) -> None:
    """Call ``hook(report, processed_at)`` after every dispatch (metrics); idempotent."""
    if hook not in _tick_hooks:
        _tick_hooks.append(hook)


def _after_tick(report: DispatchReport) -> None:
    processed_at = utcnow()
    for hook in list(_tick_hooks):
        try:
            hook(report, processed_at)
        except Exception:
            logger.exception("tick hook %r failed", hook)


def tick_time(message: dramatiq.Message[Any] | None) -> dt.datetime:
    """The minute a tick stands for: periodiq's ``scheduled_at``, else its timestamp."""
    if message is not None:
        scheduled_at = message.options.get("scheduled_at")
        if scheduled_at:
            parsed = dt.datetime.fromisoformat(str(scheduled_at))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)
        return dt.datetime.fromtimestamp(message.message_timestamp / 1000, dt.UTC)
    return utcnow()


def run_tick() -> None:
    runtime = get_runtime()
    message = CurrentMessage.get_current_message()
    tick_at = tick_time(message)
    report = dispatch(runtime.db, runtime.broker, tick_at)
    _after_tick(report)
    if report.held:
        logger.info("tick %s: jobs are held, nothing dispatched", report.tick_at.isoformat())
    elif report.queued or report.skipped or report.caught_up:
        logger.info(
            "tick %s: queued %d, skipped %d, caught up %d",
            report.tick_at.isoformat(),
            len(report.queued),
            len(report.skipped),
            len(report.caught_up),
        )


def bind_scheduler_actors(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Actor[Any, Any]:
    decorate = dramatiq.actor(
        actor_name=TICK_ACTOR,
        queue_name=settings.queue(queues.SCHEDULER),
        broker=broker,
        periodic=cron("* * * * *"),
        max_retries=3,
        min_backoff=1000,
        max_backoff=10000,
        time_limit=50_000,
    )
    actor: dramatiq.Actor[Any, Any] = decorate(run_tick)
    return actor
