"""Dispatcher CPU per tick at 100 / 1,000 / 10,000 schedules, and slot-to-start latency.

Run: bash scripts/test.sh tests/bench/test_dispatcher_bench.py --bench -s
Goals (issue 4): < 1 s CPU per tick at 10,000 schedules; p99 slot-to-start < 1 s.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dramatiq import Worker
from sqlalchemy import select

from schema import migrate
from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun
from tests.conftest import FERNET_KEY, make_settings
from tickwork import schedules
from tickwork.schedules import floor_minute
from tickwork.settings import load_settings
from workers import registry
from workers.app import build_runtime
from workers.context import RunContext
from workers.scheduler.dispatcher import advance_watermark, dispatch, insert_run
from workers.scheduler.publish import publish_run

SCHEDULES = [
    "{m} * * * *",
    "0 {m} * * * *",
    "{h:02d}:{m:02d}",
    "{n} minutes",
    "*/15 * * * *",
    "0 {h} * * 1-5",
]


def _noop(ctx: RunContext) -> None:
    return None


def _declare(count: int, unique: bool) -> dict[str, registry.JobSpec]:
    """Declare ``count`` jobs; ``unique`` gives every job its own expression (no cache reuse)."""
    for i in range(count):
        if unique:  # 60 minutes x 24 hours x 7 weekdays = 10,080 distinct expressions
            expr = f"{i % 60} {(i // 60) % 24} * * {(i // 1440) % 7}"
        else:
            pattern = SCHEDULES[i % len(SCHEDULES)]
            expr = pattern.format(m=i % 60, h=i % 24, n=5 + i % 55)
        registry.job(f"bench_{i}", description="bench", schedule=expr)(_noop)
    return {k: v for k, v in registry.all_jobs().items() if k.startswith("bench_")}


@pytest.fixture
def many_jobs() -> Iterator[None]:
    yield
    for name in list(registry.all_jobs()):
        if name.startswith("bench_"):
            registry.unregister(name)


@pytest.mark.parametrize("unique", [False, True], ids=["mixed", "unique"])
@pytest.mark.parametrize("count", [100, 1_000, 10_000])
def test_dispatcher_cpu_per_tick(tmp_path: Path, count: int, unique: bool, many_jobs: None) -> None:
    jobs = _declare(count, unique)
    schedules._parse_schedule.cache_clear()  # the first tick pays for parsing, as in a new worker
    settings = make_settings(tmp_path)
    db = Database(settings)
    migrate.upgrade(db.engine)
    runtime = build_runtime(settings, db)
    minute = floor_minute(utcnow())
    cpu: list[float] = []
    queued = 0
    for k in range(5):
        tick = minute + dt.timedelta(minutes=k)
        advance_watermark(db, tick - dt.timedelta(seconds=1))
        started = time.process_time()
        report = dispatch(db, runtime.broker, tick, now=tick, jobs=jobs)
        cpu.append(time.process_time() - started)
        queued += len(report.queued)
    print(
        f"\ndispatcher: {count:>6} {'unique' if unique else 'mixed'} schedules  "
        f"CPU first tick {cpu[0]:.3f} s, later ticks median {statistics.median(cpu[1:]):.3f} s "
        f"max {max(cpu[1:]):.3f} s  ({queued / 5:.0f} runs queued per tick)"
    )
    db.dispose()


def test_slot_to_start_latency_on_idle_worker(pg_db: Any, amqp_url: str, queue_prefix: str) -> None:
    settings = load_settings(
        {
            "TICKWORK_DATABASE_URL": pg_db.engine.url.render_as_string(hide_password=False),
            "TICKWORK_FERNET_KEY": FERNET_KEY,
            "TICKWORK_BROKER_URL": amqp_url,
            "TICKWORK_QUEUE_PREFIX": queue_prefix,
        }
    )
    runtime = build_runtime(settings, pg_db)
    worker = Worker(runtime.broker, worker_timeout=100, worker_threads=4)
    worker.start()
    try:
        base = utcnow() + dt.timedelta(seconds=2)
        for i in range(40):
            slot = base + dt.timedelta(milliseconds=100 * i)
            with pg_db.session() as s:
                run_id = insert_run(s, "heartbeat", slot, status="queued")
                run = s.get(JobRun, run_id)
            publish_run(runtime.broker, pg_db, run)
        deadline = time.time() + 30
        while time.time() < deadline:
            with pg_db.session() as s:
                runs = list(s.scalars(select(JobRun).where(JobRun.status == "succeeded")))
            if len(runs) == 40:
                break
            time.sleep(0.2)
        lat = sorted(
            (r.started_at - r.scheduled_for).total_seconds()
            for r in runs
            if r.started_at and r.scheduled_for
        )
        p50 = lat[len(lat) // 2]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(
            f"\nslot-to-start latency (RabbitMQ delayed messages, idle worker, n={len(lat)}): "
            f"p50 {p50 * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms"
        )
        assert len(lat) == 40  # every run started (a correctness check, not a timing one)
    finally:
        worker.stop()
        runtime.broker.close()
