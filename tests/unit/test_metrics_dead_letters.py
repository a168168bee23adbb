"""The stored dead letters gauge (given / when / then), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from workers.dead_letters import record_dead_letter
from workers.metrics.dead_letter_metrics import StoredDeadLettersCollector


def stored(db: Any) -> dict[str, float]:
    return {
        s.labels["queue"]: s.value
        for family in StoredDeadLettersCollector(db).collect()
        for s in family.samples
    }


def test_stored_dead_letters_are_counted_by_queue(db: Any) -> None:
    # Given no dead letters, then the gauge has no queue;
    assert stored(db) == {}
    # when two are kept for one queue and one for another,
    for queue, message_id in (("q.default", "m1"), ("q.default", "m2"), ("q.short", "m3")):
        record_dead_letter(
            db,
            queue_name=queue,
            message_id=message_id,
            actor_name="t_count",
            reason="test",
            message={"message_id": message_id},
        )
    # then each queue shows its count.
    assert stored(db) == {"q.default": 2.0, "q.short": 1.0}
