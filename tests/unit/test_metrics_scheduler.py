"""Scheduler metrics: tick lag from the tick actor, last tick and held flag from the
database, ticks published by the process that sends them (given / when / then)."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from schema.base import utcnow
from schema.engine import Database
from tests.support.systems import Embedded
from tickwork.contracts import TICK
from tickwork.schedules import floor_minute
from workers.metrics.scheduler_metrics import SchedulerStateCollector
from workers.scheduler import control


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def state(db: Database) -> dict[str, float]:
    return {
        s.name: s.value for family in SchedulerStateCollector(db).collect() for s in family.samples
    }


def test_a_tick_records_its_lag_and_the_last_tick_time(embedded: Embedded) -> None:
    # Given no tick processed yet: no last-tick time, not held,
    assert "tickwork_scheduler_last_tick_timestamp_seconds" not in state(embedded.db)
    assert state(embedded.db)["tickwork_scheduler_held"] == 0.0
    processed = value("tickwork_scheduler_ticks_processed_total", held="false") or 0.0
    published = value("tickwork_scheduler_ticks_published_total") or 0.0
    # when a tick for the current minute is sent and processed (not near the minute's
    # end: periodiq drops ticks more than 60 s old),
    if utcnow().second > 45:
        time.sleep(61 - utcnow().second)
    tick_minute = floor_minute(utcnow())
    before = utcnow()
    embedded.broker.get_actor(TICK).send_with_options(scheduled_at=tick_minute.isoformat())
    embedded.drain()
    # then its lag is the time since that minute began (counted published and processed),
    lag = value("tickwork_scheduler_tick_lag_seconds")
    assert lag is not None
    assert (before - tick_minute).total_seconds() <= lag <= (utcnow() - tick_minute).total_seconds()
    assert value("tickwork_scheduler_ticks_processed_total", held="false") == processed + 1
    assert value("tickwork_scheduler_ticks_published_total") == published + 1
    # and the database's last tick time is now.
    last_tick = state(embedded.db)["tickwork_scheduler_last_tick_timestamp_seconds"]
    assert before.timestamp() - 1 <= last_tick <= utcnow().timestamp() + 1


def test_held_jobs_show_in_the_held_flag_and_held_ticks(embedded: Embedded) -> None:
    # Given jobs are held,
    control.hold(embedded.db)
    held = value("tickwork_scheduler_ticks_processed_total", held="true") or 0.0
    # then the held flag is 1, with the time the hold began (for the held-too-long alert),
    assert state(embedded.db)["tickwork_scheduler_held"] == 1.0
    held_since = state(embedded.db)["tickwork_scheduler_held_since_timestamp_seconds"]
    assert utcnow().timestamp() - 60 <= held_since <= utcnow().timestamp() + 1
    # and a tick processed while held is counted as such;
    embedded.broker.get_actor(TICK).send_with_options(
        scheduled_at=floor_minute(utcnow()).isoformat()
    )
    embedded.drain()
    assert value("tickwork_scheduler_ticks_processed_total", held="true") == held + 1
    # when released, the flag goes back to 0.
    control.release(embedded.db, embedded.broker, "reschedule")
    assert state(embedded.db)["tickwork_scheduler_held"] == 0.0
    # and the held-since time disappears.
    assert "tickwork_scheduler_held_since_timestamp_seconds" not in state(embedded.db)


def test_a_failing_tick_hook_does_not_fail_the_tick(embedded: Embedded) -> None:
    from dramatiq.brokers.stub import StubBroker
    from periodiq import PeriodiqMiddleware

    from workers.metrics.scheduler_metrics import record_tick
    from workers.scheduler.actors import bind_scheduler_actors

    def broken(report: object, at: object) -> None:
        raise RuntimeError("metrics backend exploded")

    # Given a tick actor (on a broker of its own) whose first hook raises, before the
    # metrics hook,
    spare = StubBroker()
    spare.add_middleware(PeriodiqMiddleware())
    tick = bind_scheduler_actors(
        spare,
        lambda: embedded.runtime,
        on_reaped=lambda run: None,
        tick_hooks=(broken, record_tick),
    )
    processed = value("tickwork_scheduler_ticks_processed_total", held="false") or 0.0
    # when a tick is processed,
    tick.fn()
    # then the tick still counts, and the hooks after it still ran.
    assert "tickwork_scheduler_last_tick_timestamp_seconds" in state(embedded.db)
    assert value("tickwork_scheduler_ticks_processed_total", held="false") == processed + 1
