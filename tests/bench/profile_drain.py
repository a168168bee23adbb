"""Where a worker's CPU goes, per message: ``python -m tests.bench.profile_drain``.

Drains N plain no-op job messages (with run records) on RabbitMQ + PostgreSQL through one
in-process ``dramatiq.Worker`` and prints the rate, the process CPU per message, and the
CPU of each role (consumer thread, worker threads and their middleware, run-record
writer, run hooks) per message, from each thread's own CPU clock. docs/PERFORMANCE.md
explains the figures. Opt-in, like the rest of ``tests/bench``; it uses its own queue
prefix and deletes its queues and runs after.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

CPU: Counter[str] = Counter()


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            CPU[name] += time.thread_time() - started

    return wrapper


def _instrument(broker: Any) -> None:
    import dramatiq
    import dramatiq.worker

    from workers.dead_letters import DeadLetteringConsumer
    from workers.middleware.run_record_writer import RunRecordWriter
    from workers.middleware.run_records import RunRecordMiddleware

    worker_thread = dramatiq.worker.WorkerThread
    worker_thread.process_message = _timed("worker threads (all)", worker_thread.process_message)  # type: ignore[method-assign]
    DeadLetteringConsumer.__next__ = _timed("consumer thread", DeadLetteringConsumer.__next__)  # type: ignore[method-assign]
    RunRecordWriter._write = _timed("run-record writer", RunRecordWriter._write)  # type: ignore[method-assign]
    RunRecordMiddleware.finished = _timed("run hooks", RunRecordMiddleware.finished)  # type: ignore[method-assign]
    for middleware in broker.middleware:
        for hook in ("before_process_message", "after_process_message"):
            own = getattr(type(middleware), hook, None)
            if own is not None and own is not getattr(dramatiq.Middleware, hook):
                name = f"  {type(middleware).__name__}.{hook}"
                setattr(middleware, hook, _timed(name, getattr(middleware, hook)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("TICKWORK_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    os.environ.setdefault("TICKWORK_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    os.environ["TICKWORK_QUEUE_PREFIX"] = f"prof{uuid.uuid4().hex[:6]}."
    os.environ["TICKWORK_JOB_MODULES"] = "tests.bench.jobs"
    os.environ.setdefault("TICKWORK_FERNET_KEY", "3q2-7w8h9jZ1Z5x8uZrq3nq1nS0b0m9y6h2pQk0bq3E=")

    import dramatiq
    import pika
    from sqlalchemy import delete, func, select

    from schema import migrate
    from schema.scheduling import JobRun
    from tickwork.settings import load_settings
    from workers.app import build_runtime

    settings = load_settings()
    runtime = build_runtime(settings)
    migrate.upgrade(runtime.db.engine)
    n = args.messages
    actor = runtime.broker.get_actor("bench_noop")
    with runtime.db.session() as session:
        session.execute(delete(JobRun).where(JobRun.job_name == "bench_noop"))
    for _ in range(n):
        actor.send()
    _instrument(runtime.broker)
    worker = dramatiq.Worker(runtime.broker, worker_threads=args.threads, worker_timeout=100)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    worker.start()
    done = 0
    while done < n:
        time.sleep(0.05)
        with runtime.db.session() as session:
            done = (
                session.scalar(
                    select(func.count()).where(
                        JobRun.job_name == "bench_noop", JobRun.status == "succeeded"
                    )
                )
                or 0
            )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    worker.stop()
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"{n} messages in {elapsed:.2f} s: {n / elapsed:,.0f} msg/s")
    print(f"process CPU per message: {cpu / n * 1e6:,.0f} µs (threads={args.threads})")
    for name, seconds in sorted(CPU.items(), key=lambda item: -item[1]):
        print(f"{seconds / n * 1e6:8,.0f} µs  {name}")
    with runtime.db.session() as session:
        session.execute(delete(JobRun).where(JobRun.job_name == "bench_noop"))
    connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url or ""))
    for queue in runtime.broker.get_declared_queues():
        for suffix in ("", ".DQ", ".XQ"):
            channel = connection.channel()
            channel.queue_delete(queue + suffix)
    connection.close()


if __name__ == "__main__":
    main()
