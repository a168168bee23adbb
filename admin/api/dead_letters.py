"""Dead letters: list, replay, purge. The API, the CLI and the page all use these.

The dead-letters table is the one store. Workers write a row for each message they
refuse (contract validation, poison messages, bodies that are not a message at all);
messages Dramatiq dead-lettered itself -- after their last retry, or too old for the
message age limit -- wait in the broker (RabbitMQ's ``<queue>.XQ``, where the queue
metric counts them; the StubBroker's list in the embedded mode) and are moved into the
table first, by :func:`workers.dead_letters.collect_broker_dead_letters`, each time the
dead letters are listed, replayed all or purged. So every dead letter a metric counts
can be listed, replayed and purged.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq import Message
from sqlalchemy import delete, or_, select

from schema.audit import SYSTEM_ACTOR, Actor, record_audit
from schema.engine import Database
from schema.messaging import DeadLetter
from tickwork.errors import ValidationError
from tickwork.settings import Settings
from workers.dead_letters import collect_broker_dead_letters, without_retry_state

logger = logging.getLogger(__name__)


def collect(settings: Settings | None, db: Database, broker: dramatiq.Broker | None) -> int:
    """Move the broker's dead letters into the table (see the module's doc); how many."""
    if settings is None:
        return 0
    return collect_broker_dead_letters(settings, db, broker)


def _queue_filter(settings: Settings | None, queue: str) -> Any:
    """``queue`` as stored (the real name) or as a logical name (``default``...)."""
    names = {queue}
    if settings is not None:
        names.add(settings.queue(queue))
    return or_(*(DeadLetter.queue_name == name for name in sorted(names)))


def list_dead_letters(
    db: Database,
    queue: str | None,
    limit: int,
    *,
    settings: Settings | None = None,
    broker: dramatiq.Broker | None = None,
    collect_first: bool = True,
) -> list[DeadLetter]:
    """Newest first; with ``settings``, the broker's dead letters are collected first (if
    the broker cannot be read, the table is still listed; purge and replay-all fail)."""
    try:
        if collect_first:
            collect(settings, db, broker)
    except Exception:
        logger.warning("could not collect the broker's dead letters", exc_info=True)
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
    if queue:
        query = query.where(_queue_filter(settings, queue))
    with db.session() as session:
        return list(session.scalars(query))


def replay(
    db: Database, broker: dramatiq.Broker, dead_letter_id: int, *, actor: Actor | str = SYSTEM_ACTOR
) -> bool:
    """Send the message again (a new message id, retries reset, to its actor's queue)
    and forget the dead letter. A letter that is not a message for a known actor (a
    malformed body) cannot be replayed: ValidationError, and it stays."""
    with db.session() as session:
        row = session.get(DeadLetter, dead_letter_id, with_for_update=True)
        if row is None:
            return False
        why = why_not_replayable(broker, row)
        if why:
            raise ValidationError(f"dead letter {dead_letter_id} cannot be replayed: {why}")
        _send_again(broker, row)
        record_audit(
            session,
            actor,
            "dead-letter-replay",
            f"dead-letter:{row.id}",
            {"queue": row.queue_name, "actor": row.actor_name, "message_id": row.message_id},
            None,
            detail=row.reason[:500],
        )
        session.delete(row)
        return True


def replay_all(
    db: Database,
    broker: dramatiq.Broker,
    queue: str | None,
    *,
    settings: Settings | None = None,
    actor: Actor | str = SYSTEM_ACTOR,
) -> int:
    """Replay every replayable letter; the others (malformed bodies) stay listed."""
    collect(settings, db, broker)
    replayed = 0
    for row in list_dead_letters(db, queue, 10_000, settings=settings, collect_first=False):
        try:
            replayed += int(replay(db, broker, row.id, actor=actor))
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


def purge(
    db: Database,
    queue: str | None,
    *,
    settings: Settings | None = None,
    broker: dramatiq.Broker | None = None,
    actor: Actor | str = SYSTEM_ACTOR,
) -> int:
    """Delete the dead letters (of ``queue``), the broker's included; how many."""
    collect(settings, db, broker)
    stmt = delete(DeadLetter)
    if queue:
        stmt = stmt.where(_queue_filter(settings, queue))
    with db.session() as session:
        count = int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]
        record_audit(
            session,
            actor,
            "dead-letter-purge",
            f"dead-letters:{queue or '*'}",
            {"count": count},
            {"count": 0},
        )
        return count


def _send_again(broker: dramatiq.Broker, row: DeadLetter) -> None:
    stored = row.message or {}
    actor = broker.get_actor(str(stored.get("actor_name") or row.actor_name))
    kwargs = dict(stored.get("kwargs") or {})
    if actor.options.get("tickwork_job"):
        # A job message names its run, which has ended: without it, the job runs as a
        # new run of its own (trigger "message").
        kwargs.pop("run_id", None)
    options = stored.get("options")
    message: Message[Any] = Message(
        queue_name=actor.queue_name,  # this deployment's queue (with its prefix)
        actor_name=actor.actor_name,
        args=tuple(stored.get("args") or ()),
        kwargs=kwargs,
        options=without_retry_state(options) if isinstance(options, dict) else {},
    )
    broker.enqueue(message)
