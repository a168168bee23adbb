"""Status events on the RabbitMQ topic exchange: in order, and never in a job's way."""

from __future__ import annotations

import time

from tests.integration.test_installs_e2e import EventTap
from tickwork.events import RabbitEvents, StatusEvent


def test_events_arrive_in_order_with_routing_keys_a_ui_can_bind(
    amqp_url: str, queue_prefix: str
) -> None:
    exchange = f"{queue_prefix}events"
    tap = EventTap(amqp_url, exchange)
    events = RabbitEvents(amqp_url, exchange)
    try:
        for i in range(100):
            events.publish(StatusEvent("job", str(i), "started" if i % 2 else "completed"))
        assert events.flush(10)
        seen = tap.collect(100, timeout_s=10)
        assert [i for _, i in seen] == [str(i) for i in range(100)]
        assert seen[0] == ("job.completed", "0") and seen[1] == ("job.started", "1")
    finally:
        events.close()
        tap.close()


def test_an_unreachable_broker_never_blocks_the_publisher() -> None:
    events = RabbitEvents("amqp://guest:guest@127.0.0.1:1/%2F", "nowhere")
    started = time.perf_counter()
    for i in range(50):
        events.publish(StatusEvent("org", str(i), "failed"))
    assert time.perf_counter() - started < 0.5  # queued, not sent inline
    assert events.flush(30)  # each one tried twice, logged and dropped
    events.close()
