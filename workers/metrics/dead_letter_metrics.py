"""Dead letters kept in the database, counted at scrape.

``tickwork_queue_dead_letters`` counts what RabbitMQ still holds in each ``.XQ``; listing
the dead letters moves those into the ``dead_letters`` table (workers/dead_letters.py),
where they stay until replayed or purged. This gauge counts that table, so a dead letter
is in one of the two metrics until an operator deals with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from schema.engine import Database
from schema.messaging import DeadLetter

if TYPE_CHECKING:
    from prometheus_client.core import Metric


class StoredDeadLettersCollector:
    """``tickwork_dead_letters_stored{queue}``: rows of the dead-letters table by queue."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        with self._db.session() as session:
            counts = session.execute(
                select(DeadLetter.queue_name, func.count()).group_by(DeadLetter.queue_name)
            ).all()
        stored = GaugeMetricFamily(
            "tickwork_dead_letters_stored",
            "Dead letters kept in the database (refused by a worker, or moved there from a "
            "queue's .XQ when listed), by queue, until replayed or purged.",
            labels=["queue"],
        )
        for queue, count in counts:
            stored.add_metric([queue], float(count))
        yield stored

    def describe(self) -> list[Any]:
        return []
