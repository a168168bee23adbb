"""Putting a run's message on the broker, after its record is committed (outbox).

The run row is written first with the message id it will carry. A publisher then
*claims* the send (sets ``published_at`` where it is still empty) and sends; if the
send fails, the claim is undone. So exactly one process sends a run's message even when
the dispatcher, an outbox poller and another tick race, and a run whose publish failed
(the broker was down) is sent again by the next outbox pass, with the same message id,
so a retry of the publish cannot create a second run.

Who sends what (docs/RUN_LIFECYCLE.md): the process that recorded the run sends it at
once; runs recorded by a process that cannot reach the workers' broker (the CLI in the
embedded mode) and runs whose send failed are sent by the outbox: every tick in
production, every second in ``tickwork run``.
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
from tickwork.contracts import OVERLAP_OPTION
from tickwork.errors import UnknownJobError
from tickwork.publish import message_for, send
from workers.registry import JobSpec, get_job

logger = logging.getLogger(__name__)

REPUBLISH_AFTER_S = 15
SLOT_TRIGGERS = ("schedule", "catchup")  # runs of a slot; manual runs are "run now"


def delay_ms_for(run: JobRun, spec: JobSpec, now: dt.datetime) -> int:
    """How long the message waits on the broker: until the run's slot, plus the job's
    jitter for slots (a manual run means now: no jitter)."""
    delay_ms = 0
    if run.scheduled_for is not None and run.scheduled_for > now:
        delay_ms = int((run.scheduled_for - now).total_seconds() * 1000)
    if spec.jitter_s and run.trigger in SLOT_TRIGGERS:
        delay_ms += random.randint(0, spec.jitter_s * 1000)
    return delay_ms


def publish_run(
    broker: dramatiq.Broker,
    db: Database,
    run: JobRun,
    spec: JobSpec | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Claim and send ``run``'s message, delayed to its slot; True once sent by us."""
    spec = spec or get_job(run.job_name)
    now = now or utcnow()
    if not _claim(db, run.id):
        return False  # sent by someone else, or no longer queued
    delay_ms = delay_ms_for(run, spec, now)
    options = {}
    if spec.overlap in ("skip", "buffer_one", "replace") and run.trigger in SLOT_TRIGGERS:
        options[OVERLAP_OPTION] = spec.overlap
    kwargs = {**(run.kwargs or {}), "run_id": run.id}  # the run's arguments (entry, run now)
    message = message_for(
        db.settings, spec.name, spec.queue, kwargs, message_id=run.message_id, **options
    )
    # Stamped with when it is due: Dramatiq's age limit then measures how late the run
    # is, not how far ahead of its slot it was sent.
    message = message.copy(message_timestamp=int(now.timestamp() * 1000) + delay_ms)
    try:
        send(broker, message, delay_ms)
    except Exception:
        logger.warning(
            "could not publish run %s of %s; the outbox retries",
            run.id,
            run.job_name,
            exc_info=True,
        )
        _unclaim(db, run.id)
        return False
    return True


def _claim(db: Database, run_id: int) -> bool:
    claim = (
        update(JobRun)
        .where(JobRun.id == run_id, JobRun.status == "queued", JobRun.published_at.is_(None))
        .values(published_at=utcnow())
    )
    with db.statement() as connection:
        return bool(connection.execute(claim).rowcount)


def _unclaim(db: Database, run_id: int) -> None:
    try:
        with db.session() as session:
            session.execute(update(JobRun).where(JobRun.id == run_id).values(published_at=None))
    except Exception:  # the lost-message deadline expires it (docs/RUN_LIFECYCLE.md)
        logger.exception("could not mark run %s unpublished", run_id)


def republish_stranded(
    broker: dramatiq.Broker,
    db: Database,
    now: dt.datetime,
    older_than_s: float = REPUBLISH_AFTER_S,
) -> int:
    """Send queued runs nobody sent: their publish failed, or they were recorded by a
    process that leaves sending to the outbox. ``older_than_s`` leaves the recording
    process time to send its own runs first (the claim makes racing harmless)."""
    cutoff = now - dt.timedelta(seconds=older_than_s)
    with db.session() as session:
        runs = list(
            session.scalars(
                select(JobRun)
                .where(
                    JobRun.status == "queued",
                    JobRun.published_at.is_(None),
                    JobRun.queued_at <= cutoff,
                )
                .order_by(JobRun.id)
                .limit(1000)
            )
        )
    sent = 0
    for run in runs:
        try:
            spec = get_job(run.job_name)
        except UnknownJobError as exc:
            # Recorded by a process that could not check the name (producers.jobs): it
            # can never run, so it is failed with the reason instead of waiting forever.
            _fail_unknown(db, run.id, str(exc))
            continue
        sent += publish_run(broker, db, run, spec, now)
    return sent


def _fail_unknown(db: Database, run_id: int, why: str) -> None:
    with db.session() as session:
        session.execute(
            update(JobRun)
            .where(JobRun.id == run_id, JobRun.status == "queued")
            .values(status="failed", finished_at=utcnow(), error=f"not sent: {why}")
        )
