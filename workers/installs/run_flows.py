"""``run_flows``: run an install job's selected steps, in plan order, through a backend.

Installs are not idempotent, so this actor never runs a step twice: the job moves
``created`` → ``started`` under a row lock before the first step, and a delivery that
finds its job already ``started`` can only be a redelivery after its worker died — it
ends the job ``canceled`` with the retry message instead of running anything. A message
whose id is not the job's recorded message id (a stray from an enqueuer whose commit
failed) is dropped. Every way out ends in a final state: complete, failed (scrubbed
traceback), canceled by the user ("Job canceled.") or by worker shutdown.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import cast

import dramatiq
from dramatiq.middleware import Shutdown, TimeLimitExceeded
from sqlalchemy import Table, or_, select, update
from sqlalchemy.exc import IntegrityError

from schema.base import utcnow
from schema.catalog import Step
from schema.engine import Database
from schema.installs import JOB_CANCELED, JOB_INTERRUPTED, Job, JobStepResult
from tickwork.contracts import RunFlows
from tickwork.events import emit
from tickwork.scrub import scrub
from tickwork.settings import Settings
from workers.installs.backends.protocol import (
    OrgBackend,
    OrgRef,
    StepCanceled,
    StepFailed,
    StepSpec,
    TransientBackendError,
)
from workers.installs.backends.retry import with_backoff
from workers.installs.common import EVENT_STATUS, org_ref
from workers.installs.scratch_org_failure import fail_scratch_org

logger = logging.getLogger(__name__)

ORG_BUSY = "Another installation is already running on this org."
_JOBS = cast(Table, Job.__table__)


@dataclass
class _Started:
    org: OrgRef
    steps: list[StepSpec]


def run_flows(
    db: Database,
    settings: Settings,
    backend: OrgBackend,
    payload: RunFlows,
    message_id: str,
    broker: dramatiq.Broker | None = None,
) -> str:
    """Run the job; returns its final status (or why nothing was done). A job that
    fails on a scratch org fails the org and queues its deletion (``broker``)."""
    status = _run(db, settings, backend, payload, message_id)
    if status == "failed":
        job = _job_org_and_exception(db, payload.job_id)
        if job is not None:
            fail_scratch_org(db, settings, broker, *job)
    return status


def _job_org_and_exception(db: Database, job_id: int) -> tuple[str, str] | None:
    with db.statement() as connection:
        row = connection.execute(
            select(_JOBS.c.org_id, _JOBS.c.exception, _JOBS.c.status).where(_JOBS.c.id == job_id)
        ).first()
    if row is None or row.status != "failed":
        return None
    return row.org_id, f"The installation job {job_id} failed: {row.exception or ''}".strip()


def _run(
    db: Database,
    settings: Settings,
    backend: OrgBackend,
    payload: RunFlows,
    message_id: str,
) -> str:
    job_id = payload.job_id
    started = _start(db, settings, job_id, message_id)
    if isinstance(started, str):
        return started
    secrets = started.org.secrets
    # A backend that can stop a step part-way (between a CumulusCI flow's tasks) is asked
    # to whenever a cancel has been requested; others are only stopped between steps.
    extra: dict[str, object] = {}
    if getattr(backend, "cancels_mid_step", False):
        extra["should_cancel"] = lambda: _cancel_requested(db, job_id)
    try:
        for step in started.steps:
            if not _begin_step(db, job_id, step):
                return _finish(db, settings, job_id, "canceled", JOB_CANCELED)
            begun = utcnow()
            log = _LogStream(db, job_id)
            try:
                outcome = with_backoff(
                    lambda step=step, log=log: backend.run_step(  # type: ignore[misc]
                        started.org, step, settings.install_step_timeout_s, log.append, **extra
                    ),
                    retries=settings.backend_retries,
                    min_backoff_ms=settings.min_backoff_ms,
                    max_backoff_ms=settings.max_backoff_ms,
                    transient=lambda exc: isinstance(exc, TransientBackendError),
                )
            except StepCanceled as exc:
                output = scrub(exc.output, secrets) or ""
                message = scrub(str(exc), secrets)
                _record_step(db, job_id, step, "error", message, output, begun, log.streamed)
                return _finish(db, settings, job_id, "canceled", JOB_CANCELED)
            except StepFailed as exc:
                output = scrub(exc.output, secrets) or ""
                message = scrub(str(exc), secrets)
                _record_step(db, job_id, step, "error", message, output, begun, log.streamed)
                return _finish(
                    db, settings, job_id, "failed", scrub(f"{exc}\n{output}".strip(), secrets)
                )
            _record_step(
                db,
                job_id,
                step,
                outcome.status,
                outcome.message,
                outcome.output,
                begun,
                log.streamed,
            )
        return _finish(db, settings, job_id, "complete", None)
    except Shutdown:
        logger.warning("job %s interrupted by worker shutdown", job_id)
        return _finish(db, settings, job_id, "canceled", JOB_INTERRUPTED)
    except TimeLimitExceeded:
        return _finish(
            db,
            settings,
            job_id,
            "failed",
            f"The installation job exceeded its time limit of {settings.job_time_limit_s} s.",
        )
    except Exception as exc:
        text = "".join(traceback.format_exception(exc, limit=20))
        return _finish(db, settings, job_id, "failed", scrub(text, secrets))


_Claimed = tuple[str, int | None, int, list[int]]


def _start(db: Database, settings: Settings, job_id: int, message_id: str) -> _Started | str:
    """Move the job to ``started``, or say why it must not run (and end it when it must
    not run again). The common case is one autocommit statement; anything unusual takes
    the careful path under a row lock."""
    claimed: _Claimed | str | None
    try:
        claimed = _claim(db, job_id, message_id)
        if claimed is None:
            claimed = _start_carefully(db, settings, job_id, message_id)
    except IntegrityError:
        # The one-started-job-per-org index: another install holds the org.
        return _finish(db, settings, job_id, "failed", ORG_BUSY, ("created",))
    if isinstance(claimed, str):
        return claimed
    org_id, user_id, plan_id, selected = claimed
    org, steps = OrgRef(org_id=org_id), list[StepSpec]()
    if selected:  # a job with nothing selected needs neither credentials nor steps
        with db.session() as session:
            org = org_ref(session, org_id, user_id)
            rows = session.scalars(
                select(Step).where(Step.plan_id == plan_id, Step.id.in_(selected))
            ).all()
            steps = [
                StepSpec(id=s.id, name=s.name, kind=s.kind, path=s.path)
                for s in sorted(rows, key=lambda s: s.order)
            ]
    emit(settings, "job", job_id, "started")
    return _Started(org=org, steps=steps)


def _claim(db: Database, job_id: int, message_id: str) -> _Claimed | None:
    """created → started in one statement, when nothing stands in the way."""
    now = utcnow()
    statement = (
        _JOBS.update()
        .where(
            _JOBS.c.id == job_id,
            _JOBS.c.status == "created",
            _JOBS.c.cancel_requested_at.is_(None),
            or_(_JOBS.c.message_id.is_(None), _JOBS.c.message_id == message_id),
        )
        .values(status="started", started_at=now, edited_at=now)
        .returning(_JOBS.c.org_id, _JOBS.c.user_id, _JOBS.c.plan_id, _JOBS.c.steps)
    )
    with db.statement() as connection:
        row = connection.execute(statement).first()
    if row is None:
        return None
    return (row.org_id, row.user_id, row.plan_id, [int(s) for s in row.steps or []])


def _start_carefully(
    db: Database, settings: Settings, job_id: int, message_id: str
) -> _Claimed | str:
    ended: tuple[str, str] | None = None
    with db.session() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            logger.warning("run_flows: job %s does not exist; message dropped", job_id)
            return "missing"
        if job.message_id is not None and job.message_id != message_id:
            logger.warning(
                "run_flows: message %s is not job %s's message %s; dropped",
                message_id,
                job_id,
                job.message_id,
            )
            return "stray"
        if job.status not in ("created", "started"):
            return job.status  # already finished: a duplicate delivery
        now = utcnow()
        if job.status == "started":
            # Its worker died mid-run: steps may have changed the org; never run them again.
            ended = ("canceled", JOB_INTERRUPTED)
        elif job.cancel_requested_at is not None:
            ended = ("canceled", JOB_CANCELED)
        elif session.scalar(
            select(Job.id).where(Job.org_id == job.org_id, Job.status == "started").limit(1)
        ):
            ended = ("failed", ORG_BUSY)
        else:
            job.status = "started"
            job.started_at = job.edited_at = now
            return (job.org_id, job.user_id, job.plan_id, [int(s) for s in job.steps])
        job.status, job.exception = ended
        job.edited_at = now
        if ended[0] == "canceled":
            job.canceled_at = now
    emit(settings, "job", job_id, EVENT_STATUS[ended[0]], message=ended[1])
    return ended[0]


def _begin_step(db: Database, job_id: int, step: StepSpec) -> bool:
    """Log the step's start unless a cancel was asked for (or the job was ended)."""
    statement = (
        _JOBS.update()
        .where(
            _JOBS.c.id == job_id,
            _JOBS.c.status == "started",
            _JOBS.c.cancel_requested_at.is_(None),
        )
        .values(log=_JOBS.c.log + f"Running step {step.name!r}\n", edited_at=utcnow())
    )
    with db.statement() as connection:
        return bool(connection.execute(statement).rowcount)


def _cancel_requested(db: Database, job_id: int) -> bool:
    with db.statement() as connection:
        row = connection.execute(
            select(_JOBS.c.status, _JOBS.c.cancel_requested_at).where(_JOBS.c.id == job_id)
        ).first()
    return row is None or row.status != "started" or row.cancel_requested_at is not None


class _LogStream:
    """Appends a running step's output to the job's log as the backend reports it."""

    def __init__(self, db: Database, job_id: int) -> None:
        self.db, self.job_id = db, job_id
        self.streamed = False

    def append(self, text: str) -> None:
        if not text:
            return
        self.streamed = True
        statement = (
            _JOBS.update()
            .where(_JOBS.c.id == self.job_id)
            .values(log=_JOBS.c.log + text, edited_at=utcnow())
        )
        with self.db.statement() as connection:
            connection.execute(statement)


def _record_step(
    db: Database,
    job_id: int,
    step: StepSpec,
    status: str,
    message: str | None,
    output: str,
    begun: object,
    streamed: bool,
) -> None:
    """Store the step's result; its output joins the log unless it was streamed there."""
    now = utcnow()
    with db.session() as session:
        session.add(
            JobStepResult(
                job_id=job_id,
                step_id=step.id,
                status=status,
                message=message,
                output=output,
                started_at=begun,
                finished_at=now,
            )
        )
        line = f"Step {step.name!r}: {status}" + (f" ({message})" if message else "")
        shown = "" if streamed or not output.strip() else output.rstrip() + "\n"
        text = shown + line + "\n"
        session.execute(
            update(Job).where(Job.id == job_id).values(log=Job.log + text, edited_at=now)
        )


def _finish(
    db: Database,
    settings: Settings,
    job_id: int,
    status: str,
    exception: str | None,
    from_statuses: tuple[str, ...] = ("started",),
) -> str:
    """End the job unless someone else already did (e.g. the timed-out-job cleanup)."""
    now = utcnow()
    values: dict[str, object] = {"status": status, "edited_at": now}
    if status == "complete":
        values["success_at"] = now
    if status == "canceled":
        values["canceled_at"] = now
    if exception is not None:
        values["exception"] = exception
    with db.statement() as connection:
        result = connection.execute(
            _JOBS.update()
            .where(_JOBS.c.id == job_id, _JOBS.c.status.in_(from_statuses))
            .values(**values)
        )
        changed = bool(result.rowcount)
    if changed:
        emit(settings, "job", job_id, EVENT_STATUS[status], message=exception)
        return status
    with db.session() as session:
        current = session.scalar(select(Job.status).where(Job.id == job_id))
    return current or "missing"
