"""High availability on a real 3-node RabbitMQ cluster with quorum queues.

Three private nodes are joined into one cluster (once per module: booting them is most
of the cost). Real `tickwork worker` and `tickwork scheduler` processes get every node's
URL (TICKWORK_BROKER_URL, comma-separated) and TICKWORK_QUEUE_TYPE=quorum. Then:

- the node leading the work queue is stopped mid-drain: every message is processed once,
  the workers are back on another node within a bounded time, the tick of the next
  minute is still dispatched;
- two nodes are stopped (no majority): a publish fails loudly after the publish timeout
  instead of hanging, nothing that failed counts as sent; with a node back, all resumes;
- a message that SIGKILLs its worker at each delivery is dead-lettered by RabbitMQ after
  TICKWORK_QUEUE_DELIVERY_LIMIT returns, and its dead-letter record says why.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.reliability.conftest import (
    Figures,
    executions,
    record,
    scalar,
    suite_env,
)
from tests.acceptance.reliability.private_rabbitmq_cluster import (
    PrivateRabbitMQCluster,
    private_rabbitmq_cluster,
)
from tests.conftest import run_tickwork
from tests.support.processes import ProcessStarter
from tests.support.waiting import wait_for

DELIVERY_LIMIT = 2
PUBLISH_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateRabbitMQCluster]:
    with private_rabbitmq_cluster() as nodes:
        yield nodes


@pytest.fixture
def cluster_env(
    tmp_path: Path, pg_db: Any, cluster: PrivateRabbitMQCluster
) -> Iterator[dict[str, str]]:
    """The suite's settings on the cluster, quorum queues, a prefix of this test's own;
    every node running again afterwards."""
    prefix = f"ha{uuid.uuid4().hex[:6]}."
    env = suite_env(tmp_path, pg_db, cluster.url, prefix)
    env.update(
        TICKWORK_QUEUE_TYPE="quorum",
        TICKWORK_QUEUE_DELIVERY_LIMIT=str(DELIVERY_LIMIT),
        TICKWORK_BROKER_PUBLISH_TIMEOUT_S=str(PUBLISH_TIMEOUT_S),
        TICKWORK_JOB_MODULES=(
            "tests.acceptance.reliability.jobs,tests.acceptance.reliability.scheduled_jobs"
        ),
    )
    yield env
    for node in cluster.nodes:
        if node.node in cluster.stopped:
            cluster.start_node(node)


@pytest.fixture
def producer(cluster_env: dict[str, str]) -> Iterator[Any]:
    from tickwork.settings import load_settings
    from workers.app import build_runtime

    runtime = build_runtime(load_settings(cluster_env))
    yield runtime
    runtime.broker.close()
    runtime.db.dispose()


def _seconds_to_next_minute() -> float:
    return 60 - time.time() % 60


def _succeeded(runtime: Any, job: str = "rel_work") -> int:
    return int(
        scalar(
            runtime,
            "SELECT count(*) FROM job_runs WHERE job_name=:j AND status='succeeded'",
            j=job,
        )
    )


def test_leader_node_stopped_mid_drain_loses_and_duplicates_nothing(
    tmp_path: Path,
    cluster: PrivateRabbitMQCluster,
    cluster_env: dict[str, str],
    producer: Any,
    start_process: ProcessStarter,
    soak: bool,
) -> None:
    total = 2_000 if soak else 300
    marker = tmp_path / "executions"
    work_queue = cluster_env["TICKWORK_QUEUE_PREFIX"] + "default"
    # Given a worker and the scheduler on the cluster (all three URLs),
    worker = start_process("worker", cluster_env)
    scheduler = start_process("scheduler", cluster_env)
    actor = producer.broker.get_actor("rel_work")
    actor.send(seconds=0.0, marker=str(marker))
    wait_for(lambda: _succeeded(producer) == 1, 60, "worker up", processes=[worker])
    leader = cluster.leader_of(work_queue)
    if soak:  # the stop a few seconds before a minute: that minute's tick is at stake
        if _seconds_to_next_minute() < 14:
            time.sleep(_seconds_to_next_minute() + 1)
        time.sleep(max(0.0, _seconds_to_next_minute() - 12))
    # and a queue of short jobs being drained,
    for _ in range(total):
        actor.send(seconds=0.2, marker=str(marker))
    wait_for(
        lambda: len(executions(marker)) > total // 10, 60, "drain under way", processes=[worker]
    )
    # when the node leading the work queue is stopped,
    stopped_wall = time.time()
    stopped_at = time.monotonic()
    cluster.stop_node(leader)
    assert len(executions(marker)) <= total, "drained before the node stopped: nothing tested"
    missed_minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(
        minutes=1
    )
    # then the work queue has a new leader, the worker consumes again within a bound,
    new_leader = cluster.leader_of(work_queue)
    assert new_leader.node != leader.node

    def resumed() -> bool:
        lines = marker.read_text().split("\n")[:-1] if marker.exists() else []
        return any(float(line.split()[2]) > stopped_wall + 0.5 for line in lines)

    wait_for(resumed, 60, "work resumed on another node", processes=[worker, scheduler])
    reconnect_s = time.monotonic() - stopped_at
    # every message is processed once, in one record each,
    wait_for(
        lambda: _succeeded(producer) >= total + 1,
        240,
        "every run succeeded",
        processes=[worker, scheduler],
    )
    drained_s = time.monotonic() - stopped_at
    executed = executions(marker)
    records = scalar(producer, "SELECT count(*) FROM job_runs WHERE job_name='rel_work'")
    duplicated = len(executed) - len(set(executed)) + max(0, records - (total + 1))
    stuck = scalar(
        producer,
        "SELECT count(*) FROM job_runs WHERE job_name='rel_work' AND status<>'succeeded'",
    )
    # and the scheduler, moved to a live node, still dispatched the next minute's slot
    # (waiting for a minute boundary: --soak only).
    assert scheduler.poll() is None, "the scheduler died with the node"
    if soak:
        wait_for(
            lambda: (
                scalar(
                    producer,
                    "SELECT count(*) FROM job_runs WHERE job_name='rel_minutely'"
                    " AND scheduled_for >= :m",
                    m=missed_minute,
                )
                >= 1
            ),
            90,
            "the slot of the minute after the stop",
            processes=[worker, scheduler],
        )
    slots = scalar(producer, "SELECT count(*) FROM job_runs WHERE job_name='rel_minutely'")
    distinct = scalar(
        producer,
        "SELECT count(DISTINCT scheduled_for) FROM job_runs WHERE job_name='rel_minutely'",
    )
    record(
        Figures(
            f"quorum: leader node stopped mid-drain (reconnect {reconnect_s:.1f} s)",
            total,
            lost=total + 1 - len(set(executed)),
            duplicated=duplicated + (slots - distinct),
            stuck=stuck,
            max_recovery_s=drained_s,
        )
    )
    assert worker.poll() is None and scheduler.poll() is None
    assert len(set(executed)) == total + 1
    assert (duplicated, stuck, slots - distinct) == (0, 0, 0)
    assert reconnect_s < 30, f"workers took {reconnect_s:.1f} s to consume from another node"


def test_no_majority_publishing_fails_loudly_then_resumes(
    tmp_path: Path,
    cluster: PrivateRabbitMQCluster,
    cluster_env: dict[str, str],
    producer: Any,
    start_process: ProcessStarter,
    soak: bool,
) -> None:
    from dramatiq.errors import ConnectionClosed

    if not soak:
        pytest.skip("losing the majority of the cluster: --soak")
    marker = tmp_path / "executions"
    actor = producer.broker.get_actor("rel_work")
    # Given a worker on the cluster and a message sent and processed (queues declared),
    worker = start_process("worker", cluster_env)
    sent = [actor.send(seconds=0.0, marker=str(marker)).message_id]
    wait_for(lambda: _succeeded(producer) == 1, 60, "worker up", processes=[worker])
    # when two of the three nodes stop (the leader among them: no majority left),
    work_queue = cluster_env["TICKWORK_QUEUE_PREFIX"] + "default"
    leader = cluster.leader_of(work_queue)
    second = next(n for n in cluster.nodes if n is not leader)
    cluster.stop_node(second)
    cluster.stop_node(leader)
    lost_at = time.monotonic()
    # then a publish fails with a clear error after the publish timeout, not never,
    failed: list[str] = []
    for _ in range(3):
        started = time.monotonic()
        message = actor.message(seconds=0.0, marker=str(marker))
        with pytest.raises(ConnectionClosed, match="did not confirm"):
            producer.broker.enqueue(message)
        assert time.monotonic() - started < PUBLISH_TIMEOUT_S * 3
        failed.append(message.message_id)
    # and once a second node is back, publishing and processing resume by themselves:
    cluster.start_node(second)
    for _ in range(20):
        sent.append(actor.send(seconds=0.0, marker=str(marker)).message_id)
    wait_for(
        lambda: _succeeded(producer) >= len(sent),
        120,
        "the messages sent after the majority came back",
        processes=[worker],
    )
    recovery_s = time.monotonic() - lost_at
    with producer.db.engine.connect() as connection:
        done = {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT message_id FROM job_runs WHERE status='succeeded'"
            )
        }
    # every message reported sent was processed; a publish reported failed is not
    # counted as sent (RabbitMQ may still take it later: then it runs once, not twice).
    assert set(sent) <= done
    late = len(set(failed) & done)
    record(
        Figures(
            f"quorum: no majority ({len(failed)} publishes failed, {late} ran later)",
            len(sent),
            lost=len(set(sent) - done),
            duplicated=max(0, len(executions(marker)) - len(set(executions(marker)))),
            stuck=0,
            max_recovery_s=recovery_s,
        )
    )
    assert worker.poll() is None


def test_worker_killing_message_is_dead_lettered_by_the_delivery_limit(
    tmp_path: Path,
    cluster_env: dict[str, str],
    producer: Any,
    start_process: ProcessStarter,
) -> None:
    marker = tmp_path / "deliveries"
    # Given tickwork's own redelivery guard set out of the way (RabbitMQ must act): no
    # attempt limit, and each new worker started only once the dead one's run heartbeat
    # is stale (a redelivery while it is fresh is deferred: sent again as a new message,
    # whose delivery count starts over),
    env = {**cluster_env, "TICKWORK_MAX_REDELIVERIES": "20", "TICKWORK_RUN_HEARTBEAT_S": "1"}
    # a message whose job SIGKILLs its worker at every delivery,
    message = producer.broker.get_actor("rel_kill_worker").send(marker=str(marker))
    xq = cluster_env["TICKWORK_QUEUE_PREFIX"] + "default.XQ"
    started = time.monotonic()

    from tickwork.rabbitmq import connect

    def in_xq() -> int:
        connection = connect(cluster_env["TICKWORK_BROKER_URL"], timeout_s=5)
        try:
            return int(connection.channel().queue_declare(xq, passive=True).method.message_count)
        finally:
            connection.close()

    # when workers keep being started after each death,
    workers_started = 0
    while in_xq() == 0:
        assert time.monotonic() - started < 180, "never dead-lettered"
        worker = start_process("worker", env)
        workers_started += 1
        deadline = time.monotonic() + 60
        while worker.poll() is None and time.monotonic() < deadline and in_xq() == 0:
            time.sleep(0.3)
        if worker.poll() is None:
            worker.kill9()
        time.sleep(3.5)  # 3 heartbeats of 1 s: the run has lost its worker
    # then RabbitMQ dead-lettered it after the limit: first delivery + DELIVERY_LIMIT,
    deliveries = len(executions(marker))
    assert deliveries == DELIVERY_LIMIT + 1, deliveries
    # and `tickwork dead-letters list` shows it with the reason.
    listed = run_tickwork("dead-letters", "list", "--format", "json", cwd=tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    letters = [d for d in json.loads(listed.stdout) if d["message_id"] == message.message_id]
    assert len(letters) == 1, listed.stdout
    assert "delivery limit" in letters[0]["reason"], letters[0]["reason"]
    # and its run is failed with that reason, not left running until it is reaped.
    with producer.db.engine.connect() as connection:
        (status, error), *_ = connection.exec_driver_sql(
            "SELECT status, error FROM job_runs WHERE message_id = %s", (message.message_id,)
        ).all()
    assert status == "failed" and "delivery limit" in (error or ""), (status, error)
    record(
        Figures(
            f"quorum: SIGKILL poison, limit {DELIVERY_LIMIT} ({deliveries} deliveries)",
            1,
            lost=0,
            duplicated=0,
            stuck=0,
            max_recovery_s=time.monotonic() - started,
        )
    )


def test_migrate_loaded_classic_queues_on_the_cluster_then_drain(
    tmp_path: Path,
    cluster: PrivateRabbitMQCluster,
    cluster_env: dict[str, str],
    start_process: ProcessStarter,
    soak: bool,
) -> None:
    from tickwork.settings import load_settings
    from workers.app import build_runtime

    if not soak:  # tests/integration/test_queue_migration.py covers it on one node
        pytest.skip("migrating on the cluster: --soak")
    total = 2_000
    marker = tmp_path / "executions"
    classic_env = {**cluster_env, "TICKWORK_QUEUE_TYPE": "classic"}
    quorum_env = {**cluster_env, "TICKWORK_RABBITMQ_MANAGEMENT_URL": cluster.management_url}
    prefix = cluster_env["TICKWORK_QUEUE_PREFIX"]
    # Given classic queues on the cluster loaded with jobs (a deployment before the change),
    classic = build_runtime(load_settings(classic_env))
    actor = classic.broker.get_actor("rel_work")
    for _ in range(total):
        actor.send(seconds=0.0, marker=str(marker))
    classic.broker.close()

    def listing() -> dict[str, Any]:
        listed = run_tickwork("queues", "list", "--format", "json", cwd=tmp_path, **quorum_env)
        assert listed.returncode == 0, listed.stderr
        return {r["name"]: r for r in json.loads(listed.stdout)}

    # (the management API's counts lag by its statistics interval)
    wait_for(lambda: listing()[prefix + "default"]["messages"] == total, 30, "counted")
    assert listing()[prefix + "default"]["type"] == "classic"
    # when `tickwork queues migrate --to quorum` runs (workers stopped),
    started = time.monotonic()
    done = run_tickwork("queues", "migrate", "--to", "quorum", cwd=tmp_path, **quorum_env)
    migrate_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    # then the listing shows quorum queues, each with its leader, holding every message,
    wait_for(lambda: listing()[prefix + "default"]["messages"] == total, 30, "counted")
    row = listing()[prefix + "default"]
    assert row["type"] == "quorum" and row["messages"] == total, row
    assert row["leader"] in {n.node for n in cluster.nodes}
    # and workers on quorum queues process each message once.
    worker = start_process("worker", quorum_env)
    wait_for(
        lambda: _succeeded(classic) >= total,
        180,
        "every migrated message processed",
        processes=[worker],
    )
    executed = executions(marker)
    record(
        Figures(
            f"quorum: migrate loaded classic queues ({migrate_s:.1f} s)",
            total,
            lost=total - len(set(executed)),
            duplicated=len(executed) - len(set(executed)),
            stuck=0,
            max_recovery_s=migrate_s,
        )
    )
    classic.db.dispose()
    assert len(set(executed)) == total and len(executed) == total
