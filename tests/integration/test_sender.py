"""A service sends work with names alone: ``InstallClient.from_settings`` connects a sender
broker to RabbitMQ (no worker runtime, no actors) and the message lands on the queue the
catalogue names, with the queue prefix, as a worker will decode it."""

from __future__ import annotations

import json
from typing import Any

import pika
import pytest

from producers.client import InstallClient
from tests.conftest import service_settings
from tickwork.errors import ConfigError
from tickwork.settings import load_settings


def test_from_settings_sends_without_a_worker_runtime(
    pg_db: Any, amqp_url: str, queue_prefix: str
) -> None:
    # Given a client built from settings alone, as a service's process builds it,
    client = InstallClient.from_settings(service_settings(pg_db, amqp_url, queue_prefix))
    try:
        # when it queues a translation update,
        message_id = client.update_translations("fr")
        # then its broker declared no actor (it needs only names),
        assert client.broker.actors == {}
    finally:
        client.broker.close()
        client.db.dispose()
    # and the message waits on the prefixed queue the catalogue names, as a worker reads it.
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        method, _properties, body = connection.channel().basic_get(
            f"{queue_prefix}default", auto_ack=True
        )
    finally:
        connection.close()
    assert method is not None, "no message on the default queue"
    message = json.loads(body)
    assert message["actor_name"] == "update_all_translations"
    assert message["message_id"] == message_id
    assert message["kwargs"] == {"v": 1, "language": "fr"}


def test_from_settings_refuses_the_embedded_broker(tmp_path: Any) -> None:
    # Given embedded settings (no RabbitMQ), then a separate sender is refused, saying why.
    settings = load_settings({"TICKWORK_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="TICKWORK_BROKER_URL: sending from another process"):
        InstallClient.from_settings(settings)
