"""TICKWORK_QUEUE_TYPE and the broker URL list: the arguments of every queue tickwork
declares, the settings that are refused, and (on the shared RabbitMQ) that the broker
really declares quorum queues that Dramatiq's operations work on."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tickwork.errors import ConfigError
from tickwork.rabbitmq import (
    FreshConnectionsRabbitmqBroker,
    connect,
    node_urls,
    queue_arguments,
    server_version,
)
from tickwork.settings import load_settings


def test_classic_arguments_are_dramatiqs_own() -> None:
    # Given classic queues, then the arguments are exactly what Dramatiq declares.
    assert queue_arguments("p.default", "classic", 5) == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "p.default.XQ",
    }
    assert queue_arguments("p.default.DQ", "classic", 5)["x-dead-letter-routing-key"] == (
        "p.default.XQ"
    )
    assert set(queue_arguments("p.default.XQ", "classic", 5)) == {"x-message-ttl"}


def test_quorum_arguments_per_queue_kind() -> None:
    # Given quorum queues with a delivery limit of 4,
    work = queue_arguments("p.long", "quorum", 4)
    delay = queue_arguments("p.long.DQ", "quorum", 4)
    dead = queue_arguments("p.long.XQ", "quorum", 4)
    # then every queue is a quorum queue,
    assert {a["x-queue-type"] for a in (work, delay, dead)} == {"quorum"}
    # the work queue dead-letters after 4 returns, at least once,
    assert work["x-delivery-limit"] == 4
    assert work["x-dead-letter-strategy"] == "at-least-once"
    assert work["x-overflow"] == "reject-publish"
    assert work["x-dead-letter-routing-key"] == "p.long.XQ"
    # the delay queue dead-letters to the same .XQ without a limit (held while not due),
    assert delay["x-dead-letter-routing-key"] == "p.long.XQ"
    assert "x-delivery-limit" not in delay
    # and the dead-letter queue keeps Dramatiq's TTL, with nothing that could drop.
    assert "x-delivery-limit" not in dead and "x-message-ttl" in dead
    # Before RabbitMQ 3.10, dead-lettering is at most once (the strategy is left out).
    older = queue_arguments("p.long", "quorum", 4, at_least_once=False)
    assert "x-dead-letter-strategy" not in older and "x-overflow" not in older


def test_quorum_refuses_priorities_and_unconfirmed_publishing() -> None:
    with pytest.raises(ValueError, match="x-max-priority"):
        queue_arguments("q", "quorum", 3, max_priority=5)
    assert queue_arguments("q", "classic", 3, max_priority=5)["x-max-priority"] == 5
    with pytest.raises(ValueError, match="confirm"):
        FreshConnectionsRabbitmqBroker(url="amqp://127.0.0.1:1", queue_type="quorum")
    with pytest.raises(ValueError, match="x-max-priority"):
        FreshConnectionsRabbitmqBroker(
            url="amqp://127.0.0.1:1", queue_type="quorum", confirm_delivery=True, max_priority=3
        )
    with pytest.raises(ValueError, match="classic or quorum"):
        FreshConnectionsRabbitmqBroker(url="amqp://127.0.0.1:1", queue_type="stream")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TICKWORK_QUEUE_TYPE": "qorum"}, "TICKWORK_QUEUE_TYPE"),
        (
            {"TICKWORK_QUEUE_TYPE": "quorum", "TICKWORK_BROKER_CONFIRM_DELIVERY": "false"},
            "TICKWORK_BROKER_CONFIRM_DELIVERY=true",
        ),
        ({"TICKWORK_BROKER_URL": "amqp://a/,,amqp://b/"}, "URL 2 of 3 is empty"),
        ({"TICKWORK_BROKER_URL": "amqp://a/,http://b/"}, "URL 2 of 2 must start with amqp"),
        ({"TICKWORK_BROKER_URL": "amqp://a:x/"}, "malformed port"),
        ({"TICKWORK_QUEUE_DELIVERY_LIMIT": "0"}, "TICKWORK_QUEUE_DELIVERY_LIMIT"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_a_url_list_gives_every_node_with_a_heartbeat() -> None:
    # Given three node URLs (spaces around commas tolerated),
    settings = load_settings(
        {
            "TICKWORK_BROKER_URL": "amqp://h1:5672/, amqp://h2:5673/?connection_attempts=2 ,amqp://h3/"
        }
    )
    # then the settings keep them all, and each connection tries every one of them.
    assert settings.broker_urls == [
        "amqp://h1:5672/",
        "amqp://h2:5673/?connection_attempts=2",
        "amqp://h3/",
    ]
    urls = node_urls(settings.broker_urls)
    assert sorted(urls) == [
        "amqp://h1:5672/?heartbeat=30",
        "amqp://h2:5673/?connection_attempts=2&heartbeat=30",
        "amqp://h3/?heartbeat=30",
    ]
    broker = FreshConnectionsRabbitmqBroker(url=settings.broker_url or "")
    assert isinstance(broker.parameters, list) and len(broker.parameters) == 3


@pytest.mark.integration
def test_quorum_queues_on_rabbitmq_take_dramatiqs_operations(amqp_url: str) -> None:
    # Given a broker declaring quorum queues on the shared RabbitMQ (dead URL first:
    # the connection moves on to the live node),
    import dramatiq

    prefix = f"tq{uuid.uuid4().hex[:8]}."
    broker = FreshConnectionsRabbitmqBroker(
        url=["amqp://guest:guest@127.0.0.1:1/", amqp_url],
        confirm_delivery=True,
        queue_type="quorum",
        delivery_limit=3,
        middleware=[],
    )
    connection = connect(amqp_url, timeout_s=5)
    channel = connection.channel()
    try:
        queue = prefix + "default"
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name="a", args=(), kwargs={}, options={}
        )
        # when it sends a message and a delayed one,
        broker.enqueue(message)
        broker.enqueue(message.copy(message_id="m2"), delay=60_000)
        # then the three queues are quorum queues holding them (passive declare works),
        for name, count in ((queue, 1), (queue + ".DQ", 1), (queue + ".XQ", 0)):
            declared = channel.queue_declare(name, passive=True)
            assert declared.method.message_count == count, name
        assert broker.get_queue_message_counts(queue) == (1, 1, 0)  # same arguments again
        # a classic declaration of the same queue is refused by RabbitMQ (type is fixed),
        import pika.exceptions

        other = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            other.queue_declare(queue, durable=True)
        assert refused.value.reply_code == 406  # PRECONDITION_FAILED
        # and purging (Dramatiq's flush) empties all three.
        broker.flush(queue)
        assert broker.get_queue_message_counts(queue) == (0, 0, 0)
        assert server_version(connection) >= (3, 8)
    finally:
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(prefix + "default" + suffix)
        connection.close()
        broker.close()


def test_a_multi_host_database_url_reaches_psycopg_as_hosts() -> None:
    from sqlalchemy.engine import make_url

    # Given libpq's multi-host URL (what PostgreSQL's docs show),
    settings = load_settings(
        {
            "TICKWORK_DATABASE_URL": "postgresql://tw:pw@pg-a:5432,pg-b:5433/tickwork"
            "?target_session_attrs=read-write"
        }
    )
    # then SQLAlchemy gets it in the form it parses: both hosts, the attribute kept.
    url = make_url(settings.sqlalchemy_url)
    assert url.query["host"] == ("pg-a:5432", "pg-b:5433")
    assert url.query["target_session_attrs"] == "read-write"
    assert (url.username, url.password, url.database) == ("tw", "pw", "tickwork")
    # and a host without a name, or a port that is not a number, is refused.
    with pytest.raises(ConfigError, match="has no host name"):
        load_settings({"TICKWORK_DATABASE_URL": "postgresql://tw@pg-a:5432,/tickwork"})
    with pytest.raises(ConfigError, match="malformed port"):
        load_settings({"TICKWORK_DATABASE_URL": "postgresql://tw@pg-a:x,pg-b/tickwork"})


def test_one_node_refusing_is_a_warning_when_there_are_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    # Given a cluster URL list whose first node refuses connections,
    node_urls(["amqp://127.0.0.1:1/", "amqp://127.0.0.1:2/"])
    log = logging.getLogger("pika.adapters.utils.connection_workflow")
    # when pika reports that node's failed attempt, then it is a warning, not an error;
    with caplog.at_level(logging.INFO, logger="pika"):
        log.error("TCP Connection attempt failed: ConnectionRefusedError(111)")
        log.error("AMQP connection workflow failed: everything")
    levels = {r.getMessage().split(":")[0]: r.levelname for r in caplog.records}
    assert levels["TCP Connection attempt failed"] == "WARNING"
    # and the failure of every node stays an error.
    assert levels["AMQP connection workflow failed"] == "ERROR"
