"""tickwork's own measurements, on the real PostgreSQL and RabbitMQ, for the bench suite.

Each function appends one round's figures to a :class:`Results`. They run real worker
processes (``tickwork worker``) where the issue asks for worker processes.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import delete, func, select

from schema import migrate
from schema.engine import Database
from schema.scheduling import JobRun
from tests.bench.figures import Results
from tickwork.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
BENCH_JOB = "bench_noop"


@dataclass
class BenchEnv:
    """A database and a queue prefix of this run's own; removed at the end."""

    pg_url: str
    amqp_url: str
    prefix: str
    fernet_key: str

    def environ(self, **extra: str) -> dict[str, str]:
        return {
            "TICKWORK_DATABASE_URL": self.pg_url,
            "TICKWORK_BROKER_URL": self.amqp_url,
            "TICKWORK_QUEUE_PREFIX": self.prefix,
            "TICKWORK_FERNET_KEY": self.fernet_key,
            "TICKWORK_JOB_MODULES": "tests.bench.jobs",
            "TICKWORK_LOG_LEVEL": "WARNING",
            **extra,
        }

    def settings(self, **extra: str) -> Settings:
        return load_settings(self.environ(**extra))


@contextmanager
def bench_env() -> Iterator[BenchEnv]:
    import psycopg

    run_id = uuid.uuid4().hex[:8]
    name = f"tickwork_bench_{run_id}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = BenchEnv(
        pg_url=PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}",
        amqp_url=AMQP_URL,
        prefix=f"bench{run_id}.",
        fernet_key=Fernet.generate_key().decode(),
    )
    db = Database(env.settings())
    migrate.upgrade(db.engine)
    db.dispose()
    try:
        yield env
    finally:
        _delete_queues(env)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _delete_queues(env: BenchEnv) -> None:
    import pika

    from tickwork import queues

    connection = pika.BlockingConnection(pika.URLParameters(env.amqp_url))
    channel = connection.channel()
    for queue in queues.ALL:
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(f"{env.prefix}{queue}{suffix}")
    connection.close()


@contextmanager
def runtime(env: BenchEnv) -> Iterator[Any]:
    """This process as a producer: the tickwork broker with every job bound."""
    from workers.app import build_runtime

    rt = build_runtime(env.settings())
    try:
        yield rt
    finally:
        rt.broker.close()
        rt.db.dispose()


@contextmanager
def workers(env: BenchEnv, processes: int, threads: int = 8) -> Iterator[subprocess.Popen[str]]:
    """Real ``tickwork worker`` processes; stopped with SIGTERM (graceful) at the end."""
    proc_env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWORK_")}
    proc_env.update(env.environ())
    proc_env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + proc_env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "admin.cli.main",
            "worker",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
        ],
        cwd=REPO_ROOT,
        env=proc_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _clear_runs(db: Database) -> None:
    with db.session() as session:
        session.execute(delete(JobRun))


def _wait_finished(db: Database, n: int, proc: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with db.session() as session:
            done = session.scalar(
                select(func.count()).select_from(JobRun).where(JobRun.status == "succeeded")
            )
        if done is not None and done >= n:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"{n} runs not finished within {timeout_s} s")


def measure_enqueue(results: Results, env: BenchEnv, n: int) -> None:
    """Sending a job message through tickwork's broker (its middleware stack) vs bare Dramatiq."""
    with runtime(env) as rt:
        actor = rt.broker.get_actor(BENCH_JOB)
        started = time.perf_counter()
        for _ in range(n):
            actor.send()
        results.add(
            "tickwork actor.send, confirms on (default)",
            "msg/s",
            n / (time.perf_counter() - started),
        )
        started = time.perf_counter()
        count = max(1, n // 5)
        from workers.scheduler import control

        for _ in range(count):
            control.trigger(rt.db, rt.broker, BENCH_JOB)
        results.add(
            "tickwork trigger (run record + send)", "msg/s", count / (time.perf_counter() - started)
        )
        _purge(env)
        _clear_runs(rt.db)


def _purge(env: BenchEnv) -> None:
    import pika

    from tickwork import queues

    connection = pika.BlockingConnection(pika.URLParameters(env.amqp_url))
    channel = connection.channel()
    for queue in queues.ALL:
        for suffix in ("", ".DQ", ".XQ"):
            try:
                channel.queue_purge(f"{env.prefix}{queue}{suffix}")
            except Exception:  # a queue never declared: nothing to purge
                channel = connection.channel()
    connection.close()


def measure_drain(
    results: Results, env: BenchEnv, n: int, processes: int, threads: int = 8
) -> None:
    """N no-op job messages, each with its run record, drained by real worker processes.

    Rate = N / (last run finished - first run started), read from the run records, so
    process start-up is not counted (the bare Dramatiq reference starts its worker
    in-process, in milliseconds).
    """
    with runtime(env) as rt:
        _clear_runs(rt.db)
        actor = rt.broker.get_actor(BENCH_JOB)
        for _ in range(n):
            actor.send()
        with workers(env, processes, threads) as proc:
            _wait_finished(rt.db, n, proc, timeout_s=max(120.0, n / 20))
        with rt.db.session() as session:
            first, last = session.execute(
                select(func.min(JobRun.started_at), func.max(JobRun.finished_at))
            ).one()
        _clear_runs(rt.db)
    label = f"tickwork drain, {processes} worker process{'es' if processes > 1 else ''}"
    results.add(label, "msg/s", n / (last - first).total_seconds())


def measure_latency(results: Results, env: BenchEnv, n: int, rate_per_s: float = 20) -> None:
    """Enqueue→start under light load: manual runs at ``rate_per_s`` to an idle worker."""
    from workers.scheduler import control

    with runtime(env) as rt, workers(env, 1) as proc:
        _clear_runs(rt.db)
        control.trigger(rt.db, rt.broker, BENCH_JOB)  # wait until the worker is consuming
        _wait_finished(rt.db, 1, proc, timeout_s=120)
        _clear_runs(rt.db)
        for _ in range(n):
            control.trigger(rt.db, rt.broker, BENCH_JOB)
            time.sleep(1 / rate_per_s)
        _wait_finished(rt.db, n, proc, timeout_s=120)
        with rt.db.session() as session:
            rows = session.execute(select(JobRun.queued_at, JobRun.started_at)).all()
        _clear_runs(rt.db)
    waits = sorted((started - queued).total_seconds() * 1000 for queued, started in rows)
    results.add("enqueue→start latency p50", "ms", statistics.median(waits), False)
    results.add("enqueue→start latency p99", "ms", waits[int(len(waits) * 0.99) - 1], False)


def measure_dispatcher(results: Results, count: int) -> None:
    """CPU seconds per tick at ``count`` schedules, each its own cron expression (no reuse)."""
    import tempfile

    from tickwork import schedules
    from tickwork.schedules import floor_minute
    from workers import registry
    from workers.app import build_runtime
    from workers.scheduler.dispatcher import advance_watermark, dispatch

    def noop(ctx: Any) -> None:
        return None

    names = []
    for i in range(count):
        expr = f"{i % 60} {(i // 60) % 24} * * {(i // 1440) % 7}"
        registry.job(f"bench_dispatch_{i}", description="bench", schedule=expr)(noop)
        names.append(f"bench_dispatch_{i}")
    jobs = {name: registry.get_job(name) for name in names}
    schedules._parse_schedule.cache_clear()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings({"TICKWORK_DATA_DIR": tmp})
            db = Database(settings)
            migrate.upgrade(db.engine)
            rt = build_runtime(settings, db)
            minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
            cpu = []
            for k in range(4):
                tick = floor_minute(minute + dt.timedelta(minutes=k))
                advance_watermark(db, tick - dt.timedelta(seconds=1))
                started = time.process_time()
                dispatch(db, rt.broker, tick, now=tick, jobs=jobs)
                cpu.append(time.process_time() - started)
            db.dispose()
    finally:
        for name in names:
            registry.unregister(name)
    results.add(f"dispatcher CPU/tick, {count:,} schedules, first tick", "s", cpu[0], False)
    results.add(
        f"dispatcher CPU/tick, {count:,} schedules, later ticks",
        "s",
        statistics.median(cpu[1:]),
        False,
    )


def measure_client_publish(results: Results, env: BenchEnv, n: int) -> None:
    """The producers client (validated contract + send), with publisher confirms on (the
    default: a message is on the broker when send returns) and off (like the reference)."""
    from tickwork.contracts import EnqueueInstallJob
    from tickwork.publish import publish

    for confirm in (False, True):
        with runtime_with(env, TICKWORK_BROKER_CONFIRM_DELIVERY=str(confirm)) as rt:
            started = time.perf_counter()
            for i in range(n):
                publish(rt.broker, rt.settings, EnqueueInstallJob(job_id=i + 1))
            rate = n / (time.perf_counter() - started)
            _purge(env)
        label = "on (default)" if confirm else "off"
        results.add(f"client publish, confirms {label}", "msg/s", rate)


def measure_install_drain(results: Results, env: BenchEnv, n: int) -> None:
    """N no-op install jobs (no steps) through enqueuer and run_flows, one worker process."""

    from schema.installs import Job
    from workers.installs.enqueuer import enqueue_pending

    with runtime(env) as rt:
        _pending_install_jobs(rt.db, n)
        assert enqueue_pending(rt.db, rt.broker, rt.settings) == n
        with workers(env, 1) as proc:
            deadline = time.monotonic() + max(120.0, n / 20)
            while time.monotonic() < deadline:
                with rt.db.session() as session:
                    done = session.scalar(
                        select(func.count()).select_from(Job).where(Job.status == "complete")
                    )
                if done == n:
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited: {proc.stderr.read()[-2000:]}")
                time.sleep(0.2)
            else:
                raise TimeoutError(f"{n} install jobs not complete in time")
        with rt.db.session() as session:
            first, last = session.execute(
                select(func.min(Job.enqueued_at), func.max(Job.success_at))
            ).one()
            session.execute(delete(Job))
    results.add(
        "no-op install jobs drained, 1 worker process", "jobs/s", n / (last - first).total_seconds()
    )


def measure_enqueuer_race(results: Results, env: BenchEnv, n: int) -> None:
    """Two enqueuers racing over N pending jobs: throughput, and each enqueued exactly once."""
    import threading

    from schema.installs import Job
    from workers.installs.enqueuer import enqueue_pending

    with runtime(env) as rt:
        _pending_install_jobs(rt.db, n)
        counts = [0, 0]

        def enqueuer(k: int) -> None:
            counts[k] = enqueue_pending(rt.db, rt.broker, rt.settings)

        threads = [threading.Thread(target=enqueuer, args=(k,)) for k in (0, 1)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        with rt.db.session() as session:
            unenqueued = session.scalar(
                select(func.count()).select_from(Job).where(Job.enqueued_at.is_(None))
            )
            session.execute(delete(Job))
        _purge(env)
    if sum(counts) != n or unenqueued:
        raise AssertionError(f"enqueuers sent {counts} for {n} jobs ({unenqueued} left)")
    results.add("enqueuer, 2 racing: jobs enqueued exactly once", "jobs/s", n / elapsed)


def _pending_install_jobs(db: Database, n: int) -> None:
    """N created, unenqueued no-op install jobs (no steps) on a fresh plan and user."""
    from sqlalchemy import insert

    from schema.installs import Job
    from tests.install_data import make_plan, make_user

    tag = uuid.uuid4().hex[:6]
    plan = make_plan(db, [("Noop", "task", "tests.install_data:ok_step", False)], slug=f"b{tag}")
    user = make_user(db, name=f"bench{tag}")
    with db.session() as session:
        session.execute(
            insert(Job),
            [
                {
                    "plan_id": plan.plan_id,
                    "org_id": f"00D{tag}{i:08d}",
                    "user_id": user,
                    "steps": [],
                }
                for i in range(n)
            ],
        )


@contextmanager
def runtime_with(env: BenchEnv, **extra: str) -> Iterator[Any]:
    from workers.app import build_runtime

    rt = build_runtime(env.settings(**extra))
    try:
        yield rt
    finally:
        rt.broker.close()
        rt.db.dispose()
