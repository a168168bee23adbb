"""`tickwork queues migrate --to quorum|classic` on the shared RabbitMQ: loaded classic
queues (work, delay and dead-letter messages) rebuilt as quorum queues and back, every
message kept; refused, changing nothing, while a worker consumes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.conftest import run_tickwork
from tickwork import queues
from tickwork.rabbitmq import FreshConnectionsRabbitmqBroker, queue_arguments


@pytest.fixture
def prefix(amqp_url: str) -> Iterator[str]:
    name = f"mig{uuid.uuid4().hex[:8]}."
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    for queue in queues.physical_names(name):
        channel.queue_delete(queue)
        channel.queue_delete(queue + ".migrating")
    connection.close()


def _ids(amqp_url: str, queue: str) -> list[str]:
    """The message ids in ``queue`` (read and put back: nothing is consumed)."""
    import json

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    ids = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        ids.append(json.loads(body)["message_id"])
    connection.close()  # unacked: all back in the queue
    return sorted(ids)


def _type_of(amqp_url: str, queue: str, delivery_limit: int = 5) -> str:
    """``quorum`` if ``queue`` accepts tickwork's quorum arguments, else ``classic``."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        connection.channel().queue_declare(
            queue, durable=True, arguments=queue_arguments(queue, "quorum", delivery_limit)
        )
        return "quorum"
    except ChannelClosedByBroker as exc:
        assert exc.reply_code == 406
        return "classic"
    finally:
        if connection.is_open:
            connection.close()


def _load(amqp_url: str, prefix: str) -> dict[str, list[str]]:
    import dramatiq

    broker = FreshConnectionsRabbitmqBroker(url=amqp_url, confirm_delivery=True, middleware=[])
    sent: dict[str, list[str]] = {}
    for logical, now, later in (("default", 300, 20), ("long", 5, 0)):
        queue = prefix + logical
        for i in range(now + later):
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=queue, actor_name="a", args=(), kwargs={"i": i}, options={}
            )
            broker.enqueue(message, delay=3_600_000 if i >= now else None)
            target = queue + (".DQ" if i >= now else "")
            sent.setdefault(target, []).append(message.message_id)
    # and a dead letter, with RabbitMQ's x-death header, in default.XQ.
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    method, _props, _body = channel.basic_get(prefix + "long", auto_ack=False)
    channel.basic_nack(method.delivery_tag, requeue=False)
    connection.close()
    dead = sent[prefix + "long"].pop(0)
    sent[prefix + "long.XQ"] = [dead]
    broker.close()
    return {k: sorted(v) for k, v in sent.items()}


def test_migrate_loaded_classic_queues_to_quorum_and_back(
    tmp_path: Path, amqp_url: str, prefix: str
) -> None:
    env = {"TICKWORK_BROKER_URL": amqp_url, "TICKWORK_QUEUE_PREFIX": prefix}
    # Given classic queues holding work, delayed messages and a dead letter,
    sent = _load(amqp_url, prefix)
    assert _type_of(amqp_url, prefix + "default") == "classic"
    # when they are migrated to quorum queues,
    done = run_tickwork("queues", "migrate", "--to", "quorum", cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert "6 queue(s) rebuilt as quorum, 325 message(s) kept" in done.stdout, done.stdout
    # then every queue is a quorum queue and holds exactly the messages it held,
    for queue, ids in sent.items():
        assert _type_of(amqp_url, queue) == "quorum", queue
        assert _ids(amqp_url, queue) == ids, queue
    # the dead letter still says why it died,
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    _m, props, _b = connection.channel().basic_get(prefix + "long.XQ", auto_ack=False)
    assert props.headers["x-death"][0]["reason"] == b"rejected" or (
        props.headers["x-death"][0]["reason"] == "rejected"
    )
    connection.close()
    # a second run changes nothing,
    again = run_tickwork("queues", "migrate", "--to", "quorum", cwd=tmp_path, **env)
    assert again.returncode == 0 and "0 queue(s) rebuilt" in again.stdout, again.stdout
    # and migrating back to classic keeps them too.
    back = run_tickwork("queues", "migrate", "--to", "classic", cwd=tmp_path, **env)
    assert back.returncode == 0, back.stderr
    for queue, ids in sent.items():
        assert _ids(amqp_url, queue) == ids, queue
    assert _type_of(amqp_url, prefix + "default") == "classic"


def test_migrate_refuses_while_a_worker_consumes(
    tmp_path: Path, amqp_url: str, prefix: str
) -> None:
    env = {"TICKWORK_BROKER_URL": amqp_url, "TICKWORK_QUEUE_PREFIX": prefix}
    sent = _load(amqp_url, prefix)
    # Given a consumer on the short queue (a worker still running),
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(
        prefix + "short", durable=True, arguments=queue_arguments(prefix + "short", "classic", 5)
    )
    channel.basic_consume(prefix + "short", lambda *a: None)
    # when a migration is asked for, then it is refused, naming the queue, and nothing changed.
    done = run_tickwork("queues", "migrate", "--to", "quorum", cwd=tmp_path, **env)
    connection.close()
    assert done.returncode == 1
    assert f"queue '{prefix}short' has 1 consumer(s): stop the workers" in done.stderr
    assert _type_of(amqp_url, prefix + "default") == "classic"
    assert _ids(amqp_url, prefix + "default") == sent[prefix + "default"]


def test_queues_list_counts_over_amqp(tmp_path: Path, amqp_url: str, prefix: str) -> None:
    import json

    env = {"TICKWORK_BROKER_URL": amqp_url, "TICKWORK_QUEUE_PREFIX": prefix}
    _load(amqp_url, prefix)
    listed = run_tickwork("queues", "list", "--format", "json", cwd=tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows[prefix + "default"]["messages"] == 300
    assert rows[prefix + "default.DQ"]["messages"] == 20
    assert rows[prefix + "long.XQ"]["messages"] == 1
    assert rows[prefix + "short"]["exists"] is False
    # without the management API, type and leader are not known (null), never guessed
    assert rows[prefix + "default"]["type"] == "?" and rows[prefix + "default"]["leader"] is None
