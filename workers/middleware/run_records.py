"""Every job invocation leaves a run record: queued → running → a final status.

The record is the source of truth for history, the admin API, e-mail and metrics.
It is also how a slot runs once: a message for a run that already finished is
acknowledged and dropped, and a run whose worker died repeatedly is failed with the
reason instead of looping (Dramatiq does not count SIGKILL redeliveries as retries).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, Shutdown, SkipMessage, TimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from schema.base import utcnow
from schema.scheduling import FINISHED_STATUSES, JobRun
from tickwork.scrub import scrub
from workers.context import JobResult, RunContext, set_current_run
from workers.runtime import Runtime

logger = logging.getLogger(__name__)

RunFinishedHook = Callable[[JobRun], None]


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RunRecordMiddleware(Middleware):
    """Opens a :class:`RunContext` before a job actor runs and records its outcome."""

    actor_options = {"tickwork_job"}

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        self.on_finished: list[RunFinishedHook] = []
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
        if not self._is_job(broker, message):
            return
        runtime = self._runtime()
        settings = runtime.settings
        run_id = message.kwargs.get("run_id")
        with runtime.db.session() as session:
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
                raise SkipMessage(f"run {run.id} already {run.status}")
            retries = int(message.options.get("retries", 0))
            limit = retries + settings.max_redeliveries
            if run.status == "running" and run.attempts >= limit:
                # The previous deliveries never came back: their worker died.
                run.status = "failed"
                run.finished_at = utcnow()
                run.error = (
                    f"gave up after {run.attempts} deliveries: the worker running it died each "
                    "time (killed or out of memory)"
                )
                session.flush()
                self.finished(run)
                message.fail()  # nacked: it goes to the dead-letter queue for inspection
                raise SkipMessage(run.error)
            run.status = "running"
            run.started_at = utcnow()
            run.attempts += 1
            run.worker = _worker_name()
            run.message_id = run.message_id or message.message_id
            ctx = RunContext(
                run_id=run.id,
                job_name=run.job_name,
                scheduled_for=run.scheduled_for,
                settings=settings,
                db=runtime.db,
            )
        set_current_run(ctx)
        message.options["tickwork_run_id"] = ctx.run_id
        self._contexts[message.message_id] = ctx

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

        def record() -> JobRun:
            with self._runtime().db.session() as session:
                run = session.get(JobRun, ctx.run_id, with_for_update=True)
                assert run is not None
                if exception is None and not message.failed:
                    outcome = ctx.result or JobResult()
                    run.status = "skipped" if outcome.skipped else "succeeded"
                    run.skip_reason = outcome.skipped
                    run.records_processed = outcome.records_processed or ctx.records_processed
                    run.output = (
                        scrub("\n".join(p for p in (ctx.output, outcome.output) if p)) or ""
                    )
                    run.error = None
                    run.finished_at = finished
                else:
                    run.records_processed = ctx.records_processed
                    run.output = scrub(ctx.output) or ""
                    run.error = scrub(_describe(exception))
                    if message.failed:
                        run.status = "failed"
                        run.finished_at = finished
                    else:
                        run.status = "queued"  # Retries has re-enqueued it with a backoff
                session.flush()
                return run

        run = _with_db_retries(record)
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


def _describe(exception: BaseException | None) -> str:
    if exception is None:
        return "message failed before the job ran (too old, or rejected by middleware)"
    if isinstance(exception, TimeLimitExceeded):
        return "time limit exceeded"
    if isinstance(exception, Shutdown):
        return "interrupted by worker shutdown; requeued"
    return "".join(traceback.format_exception(exception, limit=20)).strip()


def _with_db_retries(fn: Callable[[], JobRun], attempts: int = 6) -> JobRun | None:
    """Retry a short write while the database restarts (about 30 s in all)."""
    delay_s = 0.5
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError:
            if attempt == attempts - 1:
                logger.exception("could not record run outcome: database unreachable")
                return None
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 8)
    return None
