"""The run a worker thread is executing, as seen by the job's code.

:class:`workers.middleware.run_records.RunRecordMiddleware` opens it before the
actor runs; the job function receives it and reports what it did through it.

Cancel is cooperative: an operator's cancel sets ``cancel_requested_at`` on the run
record; a long job looks at ``ctx.cancelled`` (or calls ``ctx.check_cancelled()``)
between its steps and stops. Whatever it does, a run that ends after a cancel request
is recorded ``canceled`` (the finish statement in run_record_writer.py decides).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from schema.scheduling import JobRun
from tickwork.errors import RunCancelled
from tickwork.settings import Settings

if TYPE_CHECKING:
    import datetime as dt

    from schema.engine import Database

#: At most one look at the database per run per this many seconds, however often a job
#: asks (a job may check inside a tight loop).
CANCEL_POLL_S = 1.0


@dataclass
class JobResult:
    """What a job returns: how many records it processed, its output, or a skip."""

    records_processed: int = 0
    output: str = ""
    skipped: str | None = None  # the reason, when the job decided there was nothing to do


@dataclass
class RunContext:
    run_id: int
    job_name: str
    scheduled_for: dt.datetime | None
    settings: Settings
    db: Database
    records_processed: int = 0
    result: JobResult | None = None  # set by the job wrapper when the function returns
    _output: list[str] = field(default_factory=list)
    _cancel_seen: bool = False
    _cancel_polled_at: float | None = None  # monotonic time of the last database look
    queued_count: int = 0  # runs this run has queued (ctx.queue_job), for their keys
    # Set by the run-record middleware: workers.scheduler.workflows.queue_from_run on
    # this process's broker (injected: the context knows nothing of the scheduler).
    queuer: Callable[..., int] | None = None

    def add_records(self, count: int) -> None:
        self.records_processed += count

    def log(self, line: str) -> None:
        """Append a line to the run's output (stored on the run record)."""
        self._output.append(line)

    def queue_job(
        self, job_name: str, *, delay_s: float = 0, key: str | None = None, **kwargs: Any
    ) -> int:
        """Queue a run of ``job_name`` (with ``kwargs``) after ``delay_s``, linked to this
        run (pgeu's trigger_immediate_job_run); its run id. Asked again by a re-run of
        this job body, it returns the same run instead of queueing another.
        docs/WORKFLOWS.md."""
        if self.queuer is None:
            raise RuntimeError("this run cannot queue jobs (opened outside a worker)")
        return self.queuer(self, job_name, delay_s=delay_s, key=key, kwargs=kwargs)

    @property
    def output(self) -> str:
        return "\n".join(self._output)

    @property
    def cancelled(self) -> bool:
        """True once an operator asked to cancel this run (read from the run record at
        most once per CANCEL_POLL_S; once seen, it stays true)."""
        if self._cancel_seen:
            return True
        now = time.monotonic()
        if self._cancel_polled_at is not None and now - self._cancel_polled_at < CANCEL_POLL_S:
            return False
        self._cancel_polled_at = now
        with self.db.session() as session:
            requested = session.scalar(
                select(JobRun.cancel_requested_at).where(JobRun.id == self.run_id)
            )
        self._cancel_seen = requested is not None
        return self._cancel_seen

    def check_cancelled(self) -> None:
        """Raise :class:`RunCancelled` if the run was canceled: call it between steps."""
        if self.cancelled:
            raise RunCancelled(f"run {self.run_id} of {self.job_name} was canceled")


_local = threading.local()


def set_current_run(ctx: RunContext | None) -> None:
    _local.run = ctx


def current_run() -> RunContext:
    ctx: RunContext | None = getattr(_local, "run", None)
    if ctx is None:
        raise RuntimeError("no job run is open in this thread (is RunRecordMiddleware installed?)")
    return ctx
