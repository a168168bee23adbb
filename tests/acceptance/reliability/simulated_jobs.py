"""Jobs on assorted schedules for the two-schedulers scenario (TICKWORK_JOB_MODULES)."""

from __future__ import annotations

from workers.context import RunContext
from workers.registry import job

SCHEDULES = {
    "sim_every_minute": "* * * * *",
    "sim_every_7_minutes": "*/7 * * * *",
    "sim_quarter_hour_seconds": "30 */15 * * * *",  # Barycenter's 6 fields: at :30 s
    "sim_hourly": "17 * * * *",
    "sim_nightly": "0 3 * * *",
}
# A success of the parent queues one run of the child (issue 19's chains, exactly once).
CHAINED = {"sim_every_7_minutes": "sim_chained"}


def _declare(name: str, schedule: str) -> None:
    def run(ctx: RunContext) -> int:
        return 1

    job(
        name=name,
        description=f"reliability: {schedule}",
        schedule=schedule,
        max_retries=1,
        then=[CHAINED[name]] if name in CHAINED else [],
    )(run)


def sim_chained(ctx: RunContext) -> int:
    return 1


job(description="reliability: chained after sim_every_7_minutes", max_retries=1)(sim_chained)


for _name, _schedule in SCHEDULES.items():
    _declare(_name, _schedule)
