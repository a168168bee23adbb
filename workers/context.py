"""The run a worker thread is executing, as seen by the job's code.

:class:`workers.middleware.run_records.RunRecordMiddleware` opens it before the
actor runs; the job function receives it and reports what it did through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tickwork.settings import Settings

if TYPE_CHECKING:
    import datetime as dt

    from schema.engine import Database


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


_local = threading.local()


def set_current_run(ctx: RunContext | None) -> None:
    _local.run = ctx


def current_run() -> RunContext:
    ctx: RunContext | None = getattr(_local, "run", None)
    if ctx is None:
        raise RuntimeError("no job run is open in this thread (is RunRecordMiddleware installed?)")
    return ctx
