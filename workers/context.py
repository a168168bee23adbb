"""The run a worker thread is executing, as seen by the job's code.

:class:`workers.middleware.run_records.RunRecordMiddleware` opens it before the
actor runs; the job function receives it and reports what it did through it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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

    def add_records(self, count: int) -> None:
        self.records_processed += count

    def log(self, line: str) -> None:
        """Append a line to the run's output (stored on the run record)."""
        self._output.append(line)

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
