"""The minute sweep of the install enqueuer (it also runs right after each job is
created, through ``enqueue_install_job``); this catches jobs whose immediate enqueue
was lost — the broker was down, or the service crashed between commit and send."""

from __future__ import annotations

from sqlalchemy import select

from schema.installs import Job
from tickwork import queues
from workers.context import JobResult, RunContext
from workers.installs.enqueuer import enqueue_pending
from workers.registry import job
from workers.runtime import get_runtime

# Stop sweeping well inside the short queue's 60 s limit; the rest waits a minute.
SWEEP_BUDGET_S = 40.0


def _has_pending(ctx: RunContext) -> str | None:
    with ctx.db.session() as session:
        found = session.scalar(
            select(Job.id).where(Job.enqueued_at.is_(None), Job.status == "created").limit(1)
        )
    return None if found else "no install job is waiting to be enqueued"


@job(
    description="Sends run_flows for created install jobs not yet enqueued; invalidates "
    "their preflights. Exactly once per job, even with two enqueuers.",
    schedule="* * * * *",
    queue=queues.SHORT,
    time_limit_s=60,
    max_retries=0,
    precheck=_has_pending,
)
def enqueuer(ctx: RunContext) -> JobResult:
    sent = enqueue_pending(ctx.db, get_runtime().broker, ctx.settings, budget_s=SWEEP_BUDGET_S)
    return JobResult(records_processed=sent, output=f"enqueued {sent} install job(s)")
