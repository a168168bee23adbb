"""Every job invocation leaves a run record: queued → running → a final status.

The record is the source of truth for history, the admin API, e-mail and metrics.
It is also how a slot runs once: a message for a run that already finished is
acknowledged and dropped, and a run whose worker died repeatedly is failed with the
reason instead of looping (Dramatiq does not count SIGKILL redeliveries as retries).
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, Shutdown, SkipMessage, TimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session

from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import FINISHED_STATUSES, JobRun
from tickwork.scrub import scrub
from workers.context import JobResult, RunContext, set_current_run
from workers.middleware.run_record_writer import (
    FinishRun,
    RunRecordWriter,
    StartRun,
    worker_name,
)
from workers.runtime import Runtime

logger = logging.getLogger(__name__)

RunFinishedHook = Callable[[JobRun], None]


class RunRecordMiddleware(Middleware):
    """Opens a :class:`RunContext` before a job actor runs and records its outcome."""

    actor_options = {"tickwork_job"}

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        self.on_finished: list[RunFinishedHook] = []
        self._writers: weakref.WeakKeyDictionary[Database, RunRecordWriter] = (
            weakref.WeakKeyDictionary()
        )
        # Open runs by message id; a worker thread handles one message at a time.
        self._contexts: dict[str, RunContext] = {}

    def _is_job(self, broker: dramatiq.Broker, message: MessageProxy) -> bool:
        try:
            actor = broker.get_actor(message.actor_name)
        except dramatiq.errors.ActorNotFound:
            return False
        return bool(actor.options.get("tickwork_job"))

    # --- before ---------------------------------------------------------------------
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.failed or not self._is_job(broker, message):
            return  # failed: refused by earlier middleware (poison, contracts); no run
        runtime = self._runtime()
        settings = runtime.settings
        limit = int(message.options.get("retries", 0)) + settings.max_redeliveries
        started: tuple[int, str, dt.datetime | None] | JobRun | None

        # Fast path, shared with the other threads' writes: mark the run started (or
        # create it for a plain message). It finds nothing when the run is finished or
        # its worker keeps dying.
        started = self._writer(runtime.db).start(
            StartRun(
                message_id=message.message_id,
                actor_name=message.actor_name,
                run_id=message.kwargs.get("run_id"),
                redelivery_limit=limit,
                sent_at=_sent_at(message),
            )
        )
        if started is None:
            with runtime.db.session() as session:  # the careful path decides what to do
                started = self._start_carefully(session, message, limit)
        if isinstance(started, JobRun):
            # Committed above; now tell the hooks, and dead-letter the message.
            self.finished(started)
            message.fail()  # nacked: it goes to the dead-letter queue for inspection
            raise SkipMessage(started.error)
        if started is None:
            raise SkipMessage("run already finished")
        run_id, job_name, scheduled_for = started
        ctx = RunContext(
            run_id=run_id,
            job_name=job_name,
            scheduled_for=scheduled_for,
            settings=settings,
            db=runtime.db,
        )
        set_current_run(ctx)
        message.options["tickwork_run_id"] = ctx.run_id
        self._contexts[message.message_id] = ctx

    def _writer(self, db: Database) -> RunRecordWriter:
        writer = self._writers.get(db)
        if writer is None:
            writer = self._writers.setdefault(db, RunRecordWriter(db))
        return writer

    def _start_carefully(
        self, session: Session, message: MessageProxy, limit: int
    ) -> tuple[int, str, dt.datetime | None] | JobRun | None:
        """The run is finished (None), given up on after its workers kept dying (the
        failed run, to be committed before the message is dead-lettered), or missing."""
        run_id = message.kwargs.get("run_id")
        run: JobRun | None = None
        if run_id is not None:
            run = session.get(JobRun, run_id, with_for_update=True)
        if run is None:
            run = session.scalars(
                select(JobRun).where(JobRun.message_id == message.message_id).with_for_update()
            ).first()
        if run is None:
            run = JobRun(
                job_name=message.actor_name,
                trigger="message",
                message_id=message.message_id,
                status="queued",
            )
            session.add(run)
            session.flush()
        if run.status in FINISHED_STATUSES:
            logger.info(
                "run %s of %s already %s: message dropped", run.id, run.job_name, run.status
            )
            return None
        if run.status == "running" and run.attempts >= limit:
            # The previous deliveries never came back: their worker died.
            run.status = "failed"
            run.finished_at = utcnow()
            run.error = (
                f"gave up after {run.attempts} deliveries: the worker running it died each "
                "time (killed or out of memory)"
            )
            session.flush()
            return run
        run.status = "running"
        run.started_at = utcnow()
        run.attempts += 1
        run.worker = worker_name()
        run.message_id = run.message_id or message.message_id
        session.flush()
        return run.id, run.job_name, run.scheduled_for

    # --- after ----------------------------------------------------------------------
    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        ctx = self._contexts.pop(message.message_id, None)
        set_current_run(None)
        if ctx is None:
            return
        finished = utcnow()

        if exception is None and not message.failed:
            outcome = ctx.result or JobResult()
            values: dict[str, Any] = {
                "status": "skipped" if outcome.skipped else "succeeded",
                "skip_reason": outcome.skipped,
                "records_processed": outcome.records_processed or ctx.records_processed,
                "output": scrub("\n".join(p for p in (ctx.output, outcome.output) if p)) or "",
                "error": None,
                "finished_at": finished,
            }
        else:
            values = {
                "skip_reason": None,
                "records_processed": ctx.records_processed,
                "output": scrub(ctx.output) or "",
                "error": scrub(_describe(exception)),
                # Failed for good, or re-enqueued by Retries with a backoff.
                "status": "failed" if message.failed else "queued",
                "finished_at": finished if message.failed else None,
            }

        try:
            run: JobRun | None = self._writer(self._runtime().db).finish(
                FinishRun(ctx.run_id, values)
            )
        except Exception:
            # Never raise here: Dramatiq would treat the job as failed and retry a job that
            # ran. The record stays "running"; the dispatcher reaps it past its time limit.
            logger.exception("could not record the outcome of run %s", ctx.run_id)
            run = None
        if run is not None and run.status in FINISHED_STATUSES:
            self.finished(run)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._contexts.pop(message.message_id, None)
        set_current_run(None)

    def finished(self, run: JobRun) -> None:
        """Call every on_finished hook (also used for runs the dispatcher reaps)."""
        for hook in self.on_finished:
            try:
                hook(run)
            except Exception:
                logger.exception("run-finished hook %r failed for run %s", hook, run.id)


def _sent_at(message: MessageProxy) -> dt.datetime | None:
    """When the producer sent the message (Dramatiq stamps it in ms since the epoch)."""
    stamp = getattr(message, "message_timestamp", None)
    if not stamp:
        return None
    return dt.datetime.fromtimestamp(stamp / 1000, tz=dt.UTC)


def _describe(exception: BaseException | None) -> str:
    if exception is None:
        return "message failed before the job ran (too old, or rejected by middleware)"
    if isinstance(exception, TimeLimitExceeded):
        return "time limit exceeded"
    if isinstance(exception, Shutdown):
        return "interrupted by worker shutdown; requeued"
    return "".join(traceback.format_exception(exception, limit=20)).strip()
