"""Install throughput against bare Dramatiq, measured side by side on the same RabbitMQ.

Run: bash scripts/test.sh tests/bench/test_install_bench.py --bench -s
(``INSTALL_BENCH_N`` messages, default 2000; ``INSTALL_BENCH_THREADS``, default 8.)
Goals (issue 5): drain rate of no-op install jobs ≥ 0.9x bare Dramatiq; the client's
publish rate ≥ 0.8x a bare ``actor.send``. Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from sqlalchemy import func, insert, select

from schema.installs import Job
from tests.conftest import FERNET_KEY
from tests.install_data import make_plan, make_user
from tickwork.contracts import EnqueueInstallJob
from tickwork.publish import publish
from tickwork.settings import load_settings
from workers.app import build_runtime
from workers.installs.enqueuer import enqueue_pending

N = int(os.environ.get("INSTALL_BENCH_N", "2000"))
THREADS = int(os.environ.get("INSTALL_BENCH_THREADS", "8"))


def _bare(amqp_url: str, queue: str, confirm: bool) -> tuple[float, float]:
    """Bare Dramatiq (shared/bench/anchor_dramatiq.py): enqueue rate, drain rate."""
    broker = RabbitmqBroker(url=amqp_url, confirm_delivery=confirm)
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    @dramatiq.actor(queue_name=queue, max_retries=0, broker=broker)
    def noop(i: int) -> None:
        with lock:
            count[0] += 1
            if count[0] == N:
                done.set()

    broker.declare_queue(queue)
    t0 = time.perf_counter()
    for i in range(N):
        noop.send(i)
    t1 = time.perf_counter()
    worker = Worker(broker, worker_threads=THREADS, queues={queue})
    worker.start()
    done.wait(timeout=600)
    t2 = time.perf_counter()
    worker.stop()
    broker.channel.queue_delete(queue)
    for suffix in (".DQ", ".XQ"):
        broker.channel.queue_delete(queue + suffix)
    broker.close()
    return N / (t1 - t0), N / (t2 - t1)


def _runtime(pg_db: Any, amqp_url: str, queue_prefix: str, confirm: bool) -> Any:
    settings = load_settings(
        {
            "TICKWORK_DATABASE_URL": pg_db.engine.url.render_as_string(hide_password=False),
            "TICKWORK_FERNET_KEY": FERNET_KEY,
            "TICKWORK_BROKER_URL": amqp_url,
            "TICKWORK_QUEUE_PREFIX": queue_prefix,
            "TICKWORK_BROKER_CONFIRM_DELIVERY": str(confirm),
        }
    )
    return build_runtime(settings, pg_db)


def test_drain_rate_of_noop_installs_vs_bare_dramatiq(
    pg_db: Any, amqp_url: str, queue_prefix: str
) -> None:
    # Bare Dramatiq first, on its own queue.
    _, bare_drain = _bare(amqp_url, f"{queue_prefix}bare", confirm=False)
    # N no-op install jobs (no steps selected), enqueued with no worker running,
    runtime = _runtime(pg_db, amqp_url, queue_prefix, confirm=False)
    plan = make_plan(pg_db, [("Noop", "task", "tests.install_data:ok_step", False)])
    user = make_user(pg_db)
    with pg_db.session() as s:
        s.execute(
            insert(Job),
            [
                {"plan_id": plan.plan_id, "org_id": f"00D{i:08d}", "user_id": user, "steps": []}
                for i in range(N)
            ],
        )
    assert enqueue_pending(pg_db, runtime.broker, runtime.settings) == N
    # then drained by a worker with the same threads.
    worker = Worker(runtime.broker, worker_threads=THREADS, queues={runtime.settings.queue("long")})
    t0 = time.perf_counter()
    worker.start()
    deadline = time.time() + 600
    done = 0
    while time.time() < deadline:
        with pg_db.session() as s:
            done = int(
                s.scalar(select(func.count()).select_from(Job).where(Job.status == "complete")) or 0
            )
        if done == N:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    worker.stop()
    runtime.broker.close()
    rate = done / elapsed
    print(
        f"\ninstall drain: {rate:.0f} jobs/s vs bare dramatiq {bare_drain:.0f} msg/s "
        f"(ratio {rate / bare_drain:.2f}, goal >= 0.9), N={N}, threads={THREADS}"
    )
    assert done == N


def test_client_publish_rate_vs_bare_dramatiq_send(
    pg_db: Any, amqp_url: str, queue_prefix: str
) -> None:
    lines = []
    for confirm in (False, True):
        bare_send, _ = _bare(amqp_url, f"{queue_prefix}bare{int(confirm)}", confirm=confirm)
        runtime = _runtime(pg_db, amqp_url, queue_prefix, confirm=confirm)
        actor = runtime.broker.get_actor("enqueue_install_job")
        t0 = time.perf_counter()
        for i in range(N):  # the same broker, no contract: isolates the client's own cost
            actor.send(v=1, job_id=i + 1)
        same_broker = N / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(N):
            publish(runtime.broker, runtime.settings, EnqueueInstallJob(job_id=i + 1))
        rate = N / (time.perf_counter() - t0)
        runtime.broker.channel.queue_purge(runtime.settings.queue("short"))
        runtime.broker.close()
        lines.append(
            f"client publish (confirm_delivery={confirm}): {rate:.0f} msg/s vs bare send "
            f"{bare_send:.0f} msg/s (ratio {rate / bare_send:.2f}, goal >= 0.8); "
            f"plain send on tickwork's broker {same_broker:.0f} msg/s "
            f"(client/plain {rate / same_broker:.2f})"
        )
    print("\n" + "\n".join(lines))
