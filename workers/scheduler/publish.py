"""Putting a run's message on the broker, after its record is committed (outbox).

The run row is written first with the message id it will carry; the message is sent
after the commit; ``published_at`` is set once the broker took it. Runs still
unpublished a little later (the broker was down) are sent again by the next tick,
with the same message id, so a retry of the publish cannot create a second run.
"""

from __future__ import annotations

import datetime as dt
import logging
import random

import dramatiq
from sqlalchemy import select, update

from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun
from tickwork.publish import message_for, send
from workers.registry import JobSpec, get_job

logger = logging.getLogger(__name__)

REPUBLISH_AFTER_S = 15


def publish_run(
    broker: dramatiq.Broker,
    db: Database,
    run: JobRun,
    spec: JobSpec | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Send ``run``'s message, delayed to its slot (plus jitter); True once sent."""
    spec = spec or get_job(run.job_name)
    now = now or utcnow()
    delay_ms = 0
    if run.scheduled_for is not None and run.scheduled_for > now:
        delay_ms = int((run.scheduled_for - now).total_seconds() * 1000)
    if spec.jitter_s:
        delay_ms += random.randint(0, spec.jitter_s * 1000)
    message = message_for(
        db.settings, spec.name, spec.queue, {"run_id": run.id}, message_id=run.message_id
    )
    try:
        send(broker, message, delay_ms)
    except Exception:
        logger.warning(
            "could not publish run %s of %s; the next tick retries",
            run.id,
            run.job_name,
            exc_info=True,
        )
        return False
    with db.session() as session:
        session.execute(update(JobRun).where(JobRun.id == run.id).values(published_at=utcnow()))
    return True


def republish_stranded(broker: dramatiq.Broker, db: Database, now: dt.datetime) -> int:
    """Send queued runs whose publish never happened (broker down at the time)."""
    cutoff = now - dt.timedelta(seconds=REPUBLISH_AFTER_S)
    with db.session() as session:
        runs = list(
            session.scalars(
                select(JobRun)
                .where(
                    JobRun.status == "queued",
                    JobRun.published_at.is_(None),
                    JobRun.queued_at < cutoff,
                )
                .order_by(JobRun.id)
                .limit(1000)
            )
        )
    sent = 0
    for run in runs:
        try:
            spec = get_job(run.job_name)
        except Exception:
            continue
        sent += publish_run(broker, db, run, spec, now)
    return sent
