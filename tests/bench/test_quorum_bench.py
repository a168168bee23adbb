"""Quorum vs classic queues on a 3-node RabbitMQ cluster on this machine (--bench).

Publish: tickwork's broker (publisher confirms, one message at a time, as every tickwork
sender publishes). Drain: one consumer with prefetch 100 acking each message (the broker's
side of a worker's drain, without job work). Both on the same three private nodes; the
figures are printed, never asserted (a shared machine)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.acceptance.reliability.private_rabbitmq_cluster import private_rabbitmq_cluster

MESSAGES = 2_000


def _publish(url: str, queue_type: str, queue: str) -> float:
    import dramatiq

    from tickwork.rabbitmq import FreshConnectionsRabbitmqBroker

    broker = FreshConnectionsRabbitmqBroker(
        url=url,
        confirm_delivery=True,
        queue_type=queue_type,
        middleware=[],  # type: ignore[arg-type]
    )
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue, actor_name="a", args=(), kwargs={"x": "y" * 200}, options={}
    )
    broker.enqueue(message)  # declares the queues
    started = time.perf_counter()
    for i in range(MESSAGES - 1):
        broker.enqueue(message.copy(message_id=f"m{i}"))
    elapsed = time.perf_counter() - started
    broker.close()
    return (MESSAGES - 1) / elapsed


def _drain(url: str, queue: str) -> float:
    from tickwork.rabbitmq import connect

    connection = connect(url, timeout_s=10)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=100)
    taken = 0
    started = time.perf_counter()
    for method, _props, _body in channel.consume(queue, inactivity_timeout=5):
        if method is None:
            break
        channel.basic_ack(method.delivery_tag)
        taken += 1
        if taken == MESSAGES:
            break
    elapsed = time.perf_counter() - started
    channel.cancel()
    connection.close()
    assert taken == MESSAGES
    return taken / elapsed


@pytest.mark.bench
def test_quorum_vs_classic_publish_and_drain_on_a_3_node_cluster() -> None:
    rows = []
    with private_rabbitmq_cluster() as cluster:
        for queue_type in ("classic", "quorum", "classic", "quorum"):  # interleaved twice
            queue = f"bench{uuid.uuid4().hex[:6]}.{queue_type}"
            publish = _publish(cluster.url, queue_type, queue)
            drain = _drain(cluster.url, queue)
            rows.append((queue_type, publish, drain))
    print()
    print(f"3-node cluster, {MESSAGES} messages each, one publisher / one consumer:")
    print("queue type   publish msg/s (confirms)   drain msg/s (prefetch 100, ack each)")
    for queue_type, publish, drain in rows:
        print(f"{queue_type:<12} {publish:>24.0f} {drain:>36.0f}")
    for kind in ("classic", "quorum"):
        mine = [r for r in rows if r[0] == kind]
        print(
            f"{kind} mean: publish {sum(r[1] for r in mine) / len(mine):.0f} msg/s, "
            f"drain {sum(r[2] for r in mine) / len(mine):.0f} msg/s"
        )
