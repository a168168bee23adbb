"""The ``tick`` actor: the ticker publishes it every minute; it runs the dispatcher."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from periodiq import cron

from schema.base import utcnow
from schema.scheduling import JobRun
from tickwork.contracts import CATALOGUE, TICK
from workers.runtime import Runtime
from workers.scheduler.dispatcher import DispatchReport, dispatch

logger = logging.getLogger(__name__)

TickHook = Callable[[DispatchReport, dt.datetime], None]


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


def bind_scheduler_actors(
    broker: dramatiq.Broker,
    runtime: Callable[[], Runtime],
    *,
    on_reaped: Callable[[JobRun], None],
    tick_hooks: Sequence[TickHook] = (),
) -> dramatiq.Actor[Any, Any]:
    """Declare the ``tick`` actor: it dispatches the minute, reports runs found dead to
    ``on_reaped`` (the run-record hooks), then calls each of ``tick_hooks`` (metrics)."""

    def run_tick() -> None:
        rt = runtime()
        tick_at = tick_time(CurrentMessage.get_current_message())
        report = dispatch(rt.db, rt.broker, tick_at, on_reaped=on_reaped)
        processed_at = utcnow()
        for hook in tick_hooks:
            try:
                hook(report, processed_at)
            except Exception:
                logger.exception("tick hook %r failed", hook)
        _log(report)

    settings = runtime().settings
    decorate = dramatiq.actor(
        actor_name=TICK,
        queue_name=settings.queue(CATALOGUE[TICK].queue),
        broker=broker,
        periodic=cron("* * * * *"),
        max_retries=3,
        min_backoff=1000,
        max_backoff=10000,
        time_limit=50_000,
    )
    actor: dramatiq.Actor[Any, Any] = decorate(run_tick)
    return actor


def _log(report: DispatchReport) -> None:
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
