"""Scheduler metrics: is the tick coming, how late, and are jobs held?

Three sources, each where the fact is known:

- the ``scheduler_state`` row (read at scrape time): when the dispatcher last
  processed a tick, whether jobs are held and since when. Read from the database, so the
  value is the same whichever worker ran the tick and survives restarts;
- the on-tick hook in the worker that ran the tick: how late the tick was processed
  (``tick lag``: now minus the minute the tick stands for) and how many ticks ran;
- the scheduler process's broker (a middleware): each tick it publishes.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import Middleware

from schema.engine import Database
from schema.scheduling import SchedulerState

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge
    from prometheus_client.core import Metric

    from workers.scheduler.dispatcher import DispatchReport


@dataclass
class SchedulerMetrics:
    tick_lag: Gauge
    ticks_processed: Counter
    ticks_published: Counter
    last_published: Gauge

    def record_tick(self, report: DispatchReport, processed_at: dt.datetime) -> None:
        """On-tick hook: called by the tick actor after each dispatch."""
        lag_s = (processed_at - report.tick_at).total_seconds()
        self.tick_lag.set(max(lag_s, 0.0))
        self.ticks_processed.labels(held="true" if report.held else "false").inc()

    def record_published(self, at: dt.datetime) -> None:
        self.ticks_published.inc()
        self.last_published.set(at.timestamp())


_lock = threading.Lock()
_metrics: SchedulerMetrics | None = None


def scheduler_metrics() -> SchedulerMetrics:
    """The process's scheduler metrics, created on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Gauge

            _metrics = SchedulerMetrics(
                tick_lag=Gauge(
                    "tickwork_scheduler_tick_lag_seconds",
                    "Seconds between the minute a tick stands for and when the dispatcher "
                    "processed it (the most recent tick).",
                    multiprocess_mode="mostrecent",
                ),
                ticks_processed=Counter(
                    "tickwork_scheduler_ticks_processed_total",
                    "Ticks processed by the dispatcher (held='true' while jobs are held).",
                    ["held"],
                ),
                ticks_published=Counter(
                    "tickwork_scheduler_ticks_published_total",
                    "Ticks published by this scheduler process.",
                ),
                last_published=Gauge(
                    "tickwork_scheduler_last_tick_published_timestamp_seconds",
                    "When this scheduler process last published a tick (Unix time).",
                    multiprocess_mode="max",
                ),
            )
        return _metrics


def record_tick(report: DispatchReport, processed_at: dt.datetime) -> None:
    """On-tick hook. The metrics are created on the first tick, so a process that never
    processes one (the scheduler, the API) does not show a tick lag of 0."""
    scheduler_metrics().record_tick(report, processed_at)


class TickPublishMetrics(Middleware):
    """Counts the ticks a process publishes (periodiq in ``tickwork scheduler``)."""

    def __init__(self, tick_actor: str) -> None:
        self._tick_actor = tick_actor

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if message.actor_name == self._tick_actor:
            scheduler_metrics().record_published(dt.datetime.now(dt.UTC))


class SchedulerStateCollector:
    """Last tick processed and the held flag, read from ``scheduler_state`` at scrape."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        with self._db.session() as session:
            state = session.get(SchedulerState, 1)
        last_tick = GaugeMetricFamily(
            "tickwork_scheduler_last_tick_timestamp_seconds",
            "When the dispatcher last processed a tick (Unix time); absent before the first.",
        )
        if state is not None and state.last_tick_at is not None:
            last_tick.add_metric([], _timestamp(state.last_tick_at))
        yield last_tick
        held = state is not None and state.held
        yield GaugeMetricFamily(
            "tickwork_scheduler_held",
            "1 while all jobs are held (ticks come, nothing is dispatched), else 0. The "
            "job dead-man's-switch alerts are silenced while it is 1.",
            value=1.0 if held else 0.0,
        )
        held_since = GaugeMetricFamily(
            "tickwork_scheduler_held_since_timestamp_seconds",
            "When the jobs were held (Unix time); absent while they are not.",
        )
        if state is not None and held and state.held_at is not None:
            held_since.add_metric([], _timestamp(state.held_at))
        yield held_since

    def describe(self) -> list[Any]:
        return []


def _timestamp(t: dt.datetime) -> float:
    return (t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)).timestamp()
