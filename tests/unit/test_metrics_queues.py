"""Queue depths read from the StubBroker in the embedded mode (given / when / then).

The RabbitMQ path is tested in tests/integration/test_metrics_exposed.py.
"""

from __future__ import annotations

from pathlib import Path

import dramatiq

from tests.conftest import make_settings
from tests.support.systems import Embedded
from workers.metrics.queue_metrics import QueueDepthCollector


def samples(collector: QueueDepthCollector) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels["queue"]): s.value
        for family in collector.collect()
        for s in family.samples
    }


def test_stub_queues_report_ready_delayed_and_dead_messages(tmp_path: Path) -> None:
    # Given a StubBroker with a queue-prefixed default queue (no worker consuming),
    settings = make_settings(tmp_path, TICKWORK_QUEUE_PREFIX="p1.")
    broker = dramatiq.brokers.stub.StubBroker()
    broker.emit_after("process_boot")

    @dramatiq.actor(queue_name="p1.default", broker=broker)
    def noop() -> None:
        pass

    # when two messages are ready, one is delayed and one is dead-lettered,
    noop.send()
    noop.send()
    noop.send_with_options(delay=60_000)
    broker.dead_letters_by_queue["p1.default"].append(object())  # type: ignore[arg-type]
    got = samples(QueueDepthCollector(settings, broker))
    # then the collector reports each, under the logical queue name without the prefix,
    assert got[("tickwork_queue_messages", "default")] == 2
    assert got[("tickwork_queue_delayed_messages", "default")] == 1
    assert got[("tickwork_queue_dead_letters", "default")] == 1
    # and queues nothing declared are absent rather than reported as empty.
    assert ("tickwork_queue_messages", "long") not in got


def test_embedded_queues_after_the_worker_drained_them_are_empty(embedded: Embedded) -> None:
    # Given the embedded system with its queues declared and drained,
    embedded.drain()
    got = samples(QueueDepthCollector(embedded.runtime.settings, embedded.broker))
    # then every declared queue reports zero ready messages.
    assert got[("tickwork_queue_messages", "default")] == 0
    assert got[("tickwork_queue_messages", "scheduler")] == 0
