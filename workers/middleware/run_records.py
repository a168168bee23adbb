"""Every job invocation leaves a run record: queued → running → a final status.

The record is the source of truth for history, the admin API, e-mail and metrics.
It is also how a slot runs once: a message for a run that already finished is
acknowledged and dropped, and a run whose worker died repeatedly is failed with the
reason instead of looping (Dramatiq does not count SIGKILL redeliveries as retries).

A run being executed carries a heartbeat that its worker process refreshes. A second
delivery of its message while the heartbeat is fresh (the broker restarted, or took the
message back after ``consumer_timeout``) does not run it again: it is deferred and
checked later, when the run has either finished (then dropped) or lost its worker
(then run).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, Shutdown, SkipMessage, TimeLimitExceeded
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from schema.base import utcnow
from schema.engine import Database
from schema.run_lifecycle import OVERLAP_REASON, STALE_HEARTBEATS, live_after, running_live
from schema.scheduling import FINISHED_STATUSES, JobRun
from schema.storable import printable
from tickwork.contracts import OVERLAP_OPTION
from tickwork.errors import UnknownJobError
from tickwork.scrub import scrub
from workers.acks import Outcome, defer
from workers.context import JobResult, RunContext, set_current_run
from workers.metrics.job_metrics import count_deferred_delivery
from workers.middleware.run_record_writer import (
    FinishRun,
    RunRecordWriter,
    StartRun,
    beat_runs,
    fail_unstarted,
    worker_name,
)
from workers.registry import get_job
from workers.runtime import Runtime
from workers.scheduler.control import request_cancel
from workers.scheduler.workflows import queue_from_run

logger = logging.getLogger(__name__)

RunFinishedHook = Callable[[JobRun], None]
RETRY_START_AFTER_MS = 10_000  # a message whose start could not be recorded comes back


@dataclass
class StillRunning:
    """Another delivery of this run's message is executing it right now."""

    run_id: int
    worker: str | None
    heartbeat_age_s: float


@dataclass
class Waiting:
    """The run is buffered behind a running one of its job (overlap ``buffer_one``, or
    ``replace`` while the running one has not yet stopped for its cancel)."""

    run_id: int


@dataclass
class Skipped:
    """The run was recorded skipped at its start (overlap): acknowledged, not run."""

    run: JobRun


class RunRecordMiddleware(Middleware):
    """Opens a :class:`RunContext` before a job actor runs and records its outcome."""

    actor_options = {"tickwork_job"}

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        self.on_finished: list[RunFinishedHook] = []
        self._writers: weakref.WeakKeyDictionary[Database, RunRecordWriter] = (
            weakref.WeakKeyDictionary()
        )
        # Open runs by delivery (the MessageProxy's identity), not by message id: a second
        # delivery of the same message, deferred while the first runs, must not close the
        # first one's run.
        self._contexts: dict[int, RunContext] = {}
        self._hooks_lock = threading.Lock()
        self._hooks_pid = 0
        self._hooks_feed: _HookFeed | None = None

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
        try:
            self._open_run(broker, message)
        except SkipMessage:
            raise
        except Exception as exc:
            # Dramatiq logs other exceptions of a before-hook and runs the actor anyway:
            # a job without its start recorded could run twice. Never let it run now.
            self._not_now(broker, message, exc)

    def _not_now(self, broker: dramatiq.Broker, message: MessageProxy, exc: Exception) -> NoReturn:
        """The start could not be recorded (database down past the writer's retries) or
        a deferral not sent: put the message back for later, or dead-letter it if even
        that fails -- never run it unrecorded, never lose it."""
        try:
            broker.enqueue(message.copy(), delay=RETRY_START_AFTER_MS)
        except Exception:
            logger.error(
                "could not record the start of %s (%s) nor put its message back: "
                "dead-lettered, replay it from the dead letters",
                message.message_id,
                exc,
            )
            message.fail()
            raise SkipMessage("start not recorded; dead-lettered") from exc
        logger.error(
            "could not record the start of %s (%s): not running it now; it comes back in %d s",
            message.message_id,
            exc,
            RETRY_START_AFTER_MS // 1000,
        )
        raise SkipMessage("start not recorded; put back for later") from exc

    def _open_run(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        runtime = self._runtime()
        settings = runtime.settings
        limit = int(message.options.get("retries", 0)) + settings.max_redeliveries
        alive_after = live_after(utcnow(), settings.run_heartbeat_s)
        started: (
            tuple[int, str, dt.datetime | None] | JobRun | StillRunning | Skipped | Waiting | None
        )
        overlap = message.options.get(OVERLAP_OPTION)
        skip_if_busy = overlap == "skip"
        wait_if_busy = overlap in ("buffer_one", "replace")

        # Fast path, shared with the other threads' writes: mark the run started (or
        # create it for a plain message). It finds nothing when the run is finished or
        # its worker keeps dying. A slot that must not overlap takes the careful path.
        started = None
        if not (skip_if_busy or wait_if_busy):
            started = self._writer(runtime.db).start(
                StartRun(
                    message_id=message.message_id,
                    actor_name=message.actor_name,
                    run_id=message.kwargs.get("run_id"),
                    redelivery_limit=limit,
                    sent_at=_sent_at(message),
                    live_after=alive_after,
                )
            )
        if started is None:
            with runtime.db.session() as session:  # the careful path decides what to do
                started = self._start_carefully(
                    session, message, limit, alive_after, skip_if_busy, wait_if_busy
                )
        if isinstance(started, Waiting):
            self._hold_back(broker, message, started, settings.run_heartbeat_s)
        if isinstance(started, Skipped):
            self.finished(started.run)
            raise SkipMessage(started.run.skip_reason)
        if isinstance(started, StillRunning):
            self._defer(broker, message, started, settings.run_heartbeat_s)
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
            queuer=functools.partial(_queue_from_run, broker=broker),
        )
        set_current_run(ctx)
        message.options["tickwork_run_id"] = ctx.run_id
        self._contexts[id(message)] = ctx

    # --- heartbeats of the runs this process executes -----------------------------------
    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._beating = threading.Event()
        thread = threading.Thread(
            target=self._beat_open_runs, args=(self._beating,), name="tickwork-run-heartbeats"
        )
        thread.daemon = True
        thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        beating = getattr(self, "_beating", None)
        if beating is not None:
            beating.set()

    def before_consumer_thread_shutdown(self, broker: dramatiq.Broker, thread: Any) -> None:
        # The worker threads have finished: commit their outcomes (and so release their
        # acks) before the consumer's connection closes, or the messages come back.
        self.flush(timeout_s=30)

    def _beat_open_runs(self, stop: threading.Event) -> None:
        while not stop.wait(self._runtime().settings.run_heartbeat_s):
            run_ids = [ctx.run_id for ctx in tuple(self._contexts.values())]
            try:
                beat_runs(self._runtime().db, run_ids)
            except Exception as exc:  # the database is down: the next beat tries again
                logger.warning("could not refresh the heartbeat of runs %s: %s", run_ids, exc)

    def _writer(self, db: Database) -> RunRecordWriter:
        writer = self._writers.get(db)
        if writer is None:
            writer = self._writers.setdefault(db, RunRecordWriter(db))
        return writer

    def _defer(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        busy: StillRunning,
        heartbeat_s: int,
    ) -> NoReturn:
        """Put this duplicate delivery back for later, loudly, and skip it now."""
        delay_ms = STALE_HEARTBEATS * heartbeat_s * 1000
        logger.warning(
            "run %s delivered again while it is still running on %s (heartbeat %.1f s ago): "
            "not running it twice; checking again in %d s. A broker restart does this; if "
            "it repeats for long jobs, RabbitMQ's consumer_timeout is shorter than the job "
            "(docs/DEPLOY.md).",
            busy.run_id,
            busy.worker,
            busy.heartbeat_age_s,
            delay_ms // 1000,
        )

        count_deferred_delivery(message.actor_name)
        broker.enqueue(message.copy(), delay=delay_ms)
        raise SkipMessage(f"run {busy.run_id} is still running on {busy.worker}")

    def _hold_back(
        self, broker: dramatiq.Broker, message: MessageProxy, waiting: Waiting, heartbeat_s: int
    ) -> NoReturn:
        """Overlap ``buffer_one`` or ``replace``: the job is running, so this run waits
        (stays queued) and its message comes back after a heartbeat interval to look
        again."""
        logger.info(
            "run %s of %s waits for the running one (overlap policy: %s)",
            waiting.run_id,
            message.actor_name,
            message.options.get(OVERLAP_OPTION),
        )
        broker.enqueue(message.copy(), delay=heartbeat_s * 1000)
        raise SkipMessage(f"run {waiting.run_id} buffered behind a running one")

    def _start_carefully(
        self,
        session: Session,
        message: MessageProxy,
        limit: int,
        alive_after: dt.datetime,
        skip_if_busy: bool = False,
        wait_if_busy: bool = False,
    ) -> tuple[int, str, dt.datetime | None] | JobRun | StillRunning | Skipped | Waiting | None:
        """The run is finished (None), running on another delivery (StillRunning), given
        up on after its workers kept dying (the failed run, to be committed before the
        message is dead-lettered), skipped because its job is busy (Skipped), or
        missing."""
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
        heartbeat = run.heartbeat_at
        if run.status == "running" and heartbeat is not None and heartbeat > alive_after:
            return StillRunning(run.id, run.worker, (utcnow() - heartbeat).total_seconds())
        if run.status == "running" and run.attempts >= limit:
            # The previous deliveries never came back: their worker died. (A run an
            # operator asked to cancel ends canceled, however it ends.)
            run.status = "canceled" if run.cancel_requested_at else "failed"
            run.finished_at = utcnow()
            run.error = (
                f"gave up after {run.attempts} deliveries: the worker running it died each "
                "time (killed or out of memory)"
            )
            session.flush()
            return run
        if skip_if_busy and run.status == "queued" and _job_busy(session, run, alive_after):
            run.status = "skipped"
            run.skip_reason = OVERLAP_REASON
            run.finished_at = utcnow()
            session.flush()
            return Skipped(run)
        if wait_if_busy and run.status == "queued" and _job_busy(session, run, alive_after):
            if message.options.get(OVERLAP_OPTION) == "replace":
                _cancel_the_running(session, run, alive_after)
            return Waiting(run.id)
        run.status = "running"
        run.started_at = run.heartbeat_at = utcnow()
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
        ctx = self._contexts.pop(id(message), None)
        set_current_run(None)
        if ctx is None:
            if message.failed:  # refused before the job started (poison)
                self._fail_unstarted(broker, message)
            return
        finished = utcnow()

        if exception is None and not message.failed:
            outcome = ctx.result or JobResult()
            values: dict[str, Any] = {
                "status": "skipped" if outcome.skipped else "succeeded",
                "skip_reason": _stored(outcome.skipped),
                "records_processed": outcome.records_processed or ctx.records_processed,
                "output": _stored("\n".join(p for p in (ctx.output, outcome.output) if p)) or "",
                "error": None,
                "finished_at": finished,
            }
        else:
            values = {
                "skip_reason": None,
                "records_processed": ctx.records_processed,
                "output": _stored(ctx.output) or "",
                "error": _stored(_describe(exception)),
                # Failed for good, or re-enqueued by Retries with a backoff.
                "status": "failed" if message.failed else "queued",
                "finished_at": finished if message.failed else None,
            }

        writer = self._writer(self._runtime().db)
        finish = FinishRun(ctx.run_id, values, then=_chained(ctx.job_name))
        if getattr(broker, "acks_after_outcome", False):
            # The thread moves on; the message's ack waits for the commit (workers/acks.py).
            pending = defer(message)
            writer.finish_later(
                finish,
                lambda run, error: self._outcome_committed(ctx.run_id, run, error, pending),
            )
            return
        try:
            run: JobRun | None = writer.finish(finish)
        except Exception:
            # Never raise here: Dramatiq would treat the job as failed and retry a job that
            # ran. The record stays "running"; the dispatcher reaps it past its time limit.
            logger.exception("could not record the outcome of run %s", ctx.run_id)
            run = None
        if run is not None and run.status in FINISHED_STATUSES:
            self.finished(run)

    def _outcome_committed(
        self, run_id: int, run: JobRun | None, error: BaseException | None, outcome: Outcome
    ) -> None:
        """On the writer thread: release the message's ack, hand the run to the hooks."""
        if error is not None:
            # Acked all the same: the job ran, and a redelivery must not run it again. The
            # record stays "running"; the dispatcher reaps it past its time limit.
            logger.error("could not record the outcome of run %s: %s", run_id, error)
        outcome.set_done()
        if run is not None and run.status in FINISHED_STATUSES and self.on_finished:
            self._hooks().put(run)

    def _hooks(self) -> _HookFeed:
        """The feed of finished runs for the on_finished hooks, served by a thread of
        this process (e-mail and metrics never hold a worker or the writer)."""
        with self._hooks_lock:
            if self._hooks_pid != os.getpid():
                self._hooks_feed = _HookFeed(self.finished)
                self._hooks_pid = os.getpid()
            assert self._hooks_feed is not None
            return self._hooks_feed

    def flush(self, timeout_s: float) -> None:
        """Wait for outcomes handed over to be committed and their hooks called."""
        for writer in list(self._writers.values()):
            if not writer.flush(timeout_s):
                logger.warning("run outcomes still being written after %.0f s", timeout_s)
        if self._hooks_pid == os.getpid() and self._hooks_feed is not None:
            self._hooks_feed.join(timeout_s)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        ctx = self._contexts.pop(id(message), None)
        set_current_run(None)
        if ctx is None and message.failed:
            self._fail_unstarted(broker, message)

    def _fail_unstarted(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """A run's message was failed before the job could start (too old for the age
        limit, or refused as malformed): the run can never start, so it is failed now,
        with the reason, instead of staying queued (docs/RUN_LIFECYCLE.md)."""
        run_id = message.kwargs.get("run_id") if isinstance(message.kwargs, dict) else None
        if not isinstance(run_id, int) or not self._is_job(broker, message):
            return
        settings = self._runtime().settings
        cause = message.options.get("tickwork_refused") or str(
            getattr(message, "_exception", None) or "refused by middleware"
        )
        if "age limit" in cause:
            why = (
                f"dropped unprocessed: its message was older than the message age limit "
                f"({settings.message_age_limit_s} s) when a worker received it"
            )
        else:
            why = f"dropped unprocessed: {cause}"
        try:
            run = fail_unstarted(self._runtime().db, run_id, _stored(why) or why)
        except Exception:  # the dispatcher's expiry fails it later (past the age limit)
            logger.exception("could not record run %s as failed (%s)", run_id, why)
            return
        if run is not None:
            self.finished(run)

    def finished(self, run: JobRun) -> None:
        """Call every on_finished hook (also used for runs the dispatcher reaps)."""
        for hook in self.on_finished:
            try:
                hook(run)
            except Exception:
                logger.exception("run-finished hook %r failed for run %s", hook, run.id)


class _HookFeed:
    """Finished runs for the hooks, served by one thread that is woken once per burst of
    outcomes (a writer batch), not once per run: each wake-up is a lock and a GIL hand-off."""

    def __init__(self, serve: Callable[[JobRun], None]) -> None:
        self._serve = serve
        self._changed = threading.Condition()
        self._runs: list[JobRun] = []
        self._busy = False
        threading.Thread(target=self._loop, name="tickwork-run-hooks", daemon=True).start()

    def put(self, run: JobRun) -> None:
        with self._changed:
            self._runs.append(run)
            if len(self._runs) == 1:
                self._changed.notify_all()

    def join(self, timeout_s: float) -> bool:
        """Wait until every run put so far has been served."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._runs and not self._busy, timeout_s)

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._runs))
                runs, self._runs, self._busy = self._runs, [], True
            for run in runs:
                self._serve(run)
            with self._changed:
                self._busy = False
                self._changed.notify_all()


def _live_others(run: JobRun, alive_after: dt.datetime) -> Any:
    """The other runs of ``run``'s job and schedule entry executing on a live worker (the
    runs overlap is judged against)."""
    return select(JobRun).where(
        JobRun.job_name == run.job_name,
        JobRun.entry == run.entry,  # overlap is judged per schedule entry
        JobRun.id != run.id,
        running_live(alive_after),
    )


def _job_busy(session: Session, run: JobRun, alive_after: dt.datetime) -> bool:
    """Another run of ``run``'s job executes on a live worker right now."""
    if session.get_bind().dialect.name == "postgresql":
        # Two slots of one job starting at once in two processes must not both see "free".
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"tickwork-overlap:{run.job_name}"},
        )
    other = session.scalars(
        _live_others(run, alive_after).with_only_columns(JobRun.id).limit(1)
    ).first()
    return other is not None


def _cancel_the_running(session: Session, run: JobRun, alive_after: dt.datetime) -> None:
    """Overlap ``replace``: ask the live runs of ``run``'s job (and entry) to cancel with
    an operator's cancel (the job sees ``ctx.cancelled``); each asked once, its audit row
    naming the run that replaces it."""
    others = session.scalars(
        _live_others(run, alive_after).where(JobRun.cancel_requested_at.is_(None)).with_for_update()
    ).all()
    for other in others:
        request_cancel(
            session,
            other,
            actor="overlap:replace",
            detail=f"{run.job_name}: replaced by run {run.id} (overlap policy: replace)",
        )
        logger.info(
            "run %s of %s asked to cancel: run %s replaces it (overlap policy: replace)",
            other.id,
            run.job_name,
            run.id,
        )
    session.flush()


def _queue_from_run(
    ctx: RunContext, job_name: str, *, broker: dramatiq.Broker, **options: Any
) -> int:
    return queue_from_run(ctx, broker, job_name, **options)


def _chained(job_name: str) -> tuple[str, ...]:
    """The jobs a success of ``job_name`` queues (its ``then``)."""
    try:
        return get_job(job_name).then
    except UnknownJobError:
        return ()


def _stored(text: str | None) -> str | None:
    """Job output or an error as the run record keeps it: credentials masked, and a NUL
    or an unpaired surrogate (which PostgreSQL, or the UTF-8 encoder, refuses) escaped,
    so a job printing one is recorded instead of failing the write."""
    return None if text is None else printable(scrub(text) or "")


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
