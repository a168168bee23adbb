"""A job module with a chain and schedule entries, for child processes (the web page
test): ``TICKWORK_JOB_MODULES=tests.support.workflow_jobs_module``."""

from workers.context import RunContext
from workers.registry import Entry, job


@job(description="test: first of a chain", then=["w_second"])
def w_first(ctx: RunContext) -> int:
    ctx.log("first done")
    return 1


@job(description="test: queued by w_first")
def w_second(ctx: RunContext) -> int:
    ctx.log("second done")
    return 1


@job(
    description="test: one function, two entries",
    entries=[Entry("a", "@hourly", {"source": "A"}), Entry("b", "@daily", {"source": "B"})],
    pause_after_failures=3,
)
def w_sync(ctx: RunContext, source: str) -> int:
    ctx.log(f"synced {source}")
    return 1
