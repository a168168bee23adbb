"""Dead letters kept in the database (messages refused by contract validation, and job
messages that failed for good): list, replay, purge."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Message
from sqlalchemy import delete, select

from schema.engine import Database
from schema.messaging import DeadLetter
from tickwork.errors import ValidationError


def list_dead_letters(db: Database, queue: str | None, limit: int) -> list[DeadLetter]:
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if queue:
        query = query.where(DeadLetter.queue_name == queue)
    with db.session() as session:
        return list(session.scalars(query))


def replay(db: Database, broker: dramatiq.Broker, dead_letter_id: int) -> bool:
    """Send the message again (a new message id) and forget the dead letter. A letter
    that is not a message for a known actor (a malformed body) cannot be replayed:
    ValidationError, and it stays."""
    with db.session() as session:
        row = session.get(DeadLetter, dead_letter_id, with_for_update=True)
        if row is None:
            return False
        why = why_not_replayable(broker, row)
        if why:
            raise ValidationError(f"dead letter {dead_letter_id} cannot be replayed: {why}")
        _send_again(broker, row)
        session.delete(row)
        return True


def replay_all(db: Database, broker: dramatiq.Broker, queue: str | None) -> int:
    """Replay every replayable letter; the others (malformed bodies) stay listed."""
    replayed = 0
    for row in list_dead_letters(db, queue, limit=10_000):
        try:
            replayed += int(replay(db, broker, row.id))
        except ValidationError:
            continue  # not replayable: replay() checked under the row lock; it stays
    return replayed


def why_not_replayable(broker: dramatiq.Broker, row: DeadLetter) -> str | None:
    stored = row.message or {}
    actor = stored.get("actor_name") or row.actor_name
    if actor not in broker.actors:
        return f"no actor {str(actor)[:100]!r} (malformed or unknown message)"
    if not isinstance(stored.get("args", []), list) or not isinstance(
        stored.get("kwargs", {}), dict
    ):
        return "its arguments are not a list and an object"
    return None


def purge(db: Database, queue: str | None) -> int:
    stmt = delete(DeadLetter)
    if queue:
        stmt = stmt.where(DeadLetter.queue_name == queue)
    with db.session() as session:
        return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def _send_again(broker: dramatiq.Broker, row: DeadLetter) -> None:
    stored = row.message or {}
    message: Message[Any] = Message(
        queue_name=str(stored.get("queue_name") or row.queue_name),
        actor_name=str(stored.get("actor_name") or row.actor_name),
        args=tuple(stored.get("args") or ()),
        kwargs=dict(stored.get("kwargs") or {}),
        options={},
    )
    broker.enqueue(message)
