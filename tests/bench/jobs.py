"""Jobs the benchmarks run (loaded by worker processes via TICKWORK_JOB_MODULES)."""

from __future__ import annotations

from workers.context import RunContext
from workers.registry import job


@job(description="bench: does nothing (measures the cost of a run record)")
def bench_noop(ctx: RunContext) -> int:
    return 0
