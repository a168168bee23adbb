"""``enqueuer``: turn created install jobs into ``run_flows`` messages, each exactly once.

Rows are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite
takes its single write lock first), so two enqueuers racing never pick the same job.
The message is sent while the rows are still locked and ``enqueued_at`` + the
message id are committed right after. If that commit fails, the job may be sent
again by the next sweep; whichever message arrives first claims the job
(``created → started``, one statement) and the other finds it started or sees that its
id is not the job's, and runs nothing: still at most one run. Enqueuing also invalidates the valid
preflights of the same (org, user, plan): a preflight is good for one install.
"""

from __future__ import annotations

import time

import dramatiq
from sqlalchemy import select, text, tuple_, update

from schema.base import utcnow
from schema.engine import Database
from schema.installs import Job, PreflightResult
from tickwork.contracts import RunFlows
from tickwork.publish import payload_message, send
from tickwork.settings import Settings

BATCH_SIZE = 500


def enqueue_pending(
    db: Database,
    broker: dramatiq.Broker,
    settings: Settings,
    *,
    job_id: int | None = None,
    budget_s: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Enqueue created, unenqueued jobs (only ``job_id`` when given); returns how many.

    ``budget_s`` bounds the time spent: the rest waits for the next sweep.
    """
    deadline = None if budget_s is None else time.monotonic() + budget_s
    total = 0
    while deadline is None or time.monotonic() < deadline:
        sent = _enqueue_batch(db, broker, settings, job_id, batch_size)
        total += sent
        if sent < batch_size or job_id is not None:
            break
    return total


def _enqueue_batch(
    db: Database,
    broker: dramatiq.Broker,
    settings: Settings,
    job_id: int | None,
    batch_size: int,
) -> int:
    with db.session() as session:
        if not db.is_postgresql:
            # SQLite: take the write lock before reading, so two enqueuers serialise.
            session.execute(text("UPDATE jobs SET id = id WHERE 0 = 1"))
        query = select(Job.id, Job.org_id, Job.user_id, Job.plan_id).where(
            Job.enqueued_at.is_(None), Job.status == "created"
        )
        if job_id is not None:
            query = query.where(Job.id == job_id)
        rows = session.execute(
            query.order_by(Job.id).limit(batch_size).with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        keys = {(r.org_id, r.user_id, r.plan_id) for r in rows if r.user_id is not None}
        if keys:
            session.execute(
                update(PreflightResult)
                .where(
                    PreflightResult.is_valid.is_(True),
                    tuple_(
                        PreflightResult.org_id, PreflightResult.user_id, PreflightResult.plan_id
                    ).in_(list(keys)),
                )
                .values(is_valid=False, edited_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        now = utcnow()
        claimed = []
        for row in rows:
            message_id = send(broker, payload_message(settings, RunFlows(job_id=row.id)))
            claimed.append({"id": row.id, "message_id": message_id, "enqueued_at": now})
        session.execute(update(Job), claimed)
        return len(claimed)
