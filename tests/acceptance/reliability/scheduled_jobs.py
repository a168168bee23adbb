"""A scheduled job for the broker-restart scenario (TICKWORK_JOB_MODULES): it runs every
minute and catches up a missed minute once, so an outage over a minute boundary shows."""

from __future__ import annotations

from workers.context import RunContext
from workers.registry import job


@job(
    description="reliability: every minute; a minute missed in an outage is caught up once",
    schedule="* * * * *",
    catchup="once",
    max_retries=3,
)
def rel_minutely(ctx: RunContext) -> int:
    return 1
