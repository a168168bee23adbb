"""Throw-away jobs for tests of the scheduler, the API, metrics and poison messages.

Nothing is declared at import: the ``tj`` fixture (tests/conftest.py) declares them for
one test and forgets them after, each test with its own record of calls. They have no
schedule of their own (so nothing dispatches them unasked); a test gives one a schedule
with :meth:`ThrowawayJobs.scheduled`. Child processes that need them list
``tests.support.throwaway_jobs_module`` in ``TICKWORK_JOB_MODULES``.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from workers.context import JobResult, RunContext
from workers.registry import JobSpec, get_job, job, unregister


def _nothing_to_do(ctx: RunContext) -> str | None:
    return "nothing pending"


class ThrowawayJobs:
    """The jobs ``t_count``, ``t_typed``, ``t_slow``, ``t_fail``, ``t_precheck``,
    ``t_silent`` and ``t_steps``; ``calls`` lists their executions in this process, in
    order."""

    NAMES = ("t_count", "t_typed", "t_slow", "t_fail", "t_precheck", "t_silent", "t_steps")

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release_slow = threading.Event()  # t_slow runs until this is set

    def declare(self) -> None:
        job(description="test: counts its calls")(self.t_count)
        job(description="test: typed parameters")(self.t_typed)
        job(description="test: blocks until released", time_limit_s=30)(self.t_slow)
        job(description="test: always fails", max_retries=1)(self.t_fail)
        job(description="test: precheck always skips", precheck=_nothing_to_do)(self.t_precheck)
        job(description="test: silent success")(self.t_silent)
        job(description="test: 200 short steps, stops when canceled")(self.t_steps)

    def forget(self) -> None:
        for name in self.NAMES:
            unregister(name)

    def scheduled(
        self, name: str, schedule: str = "* * * * *", **changes: object
    ) -> dict[str, JobSpec]:
        """The declared job ``name`` with a schedule, as ``dispatch(jobs=...)`` takes it."""
        spec = dataclasses.replace(get_job(name), schedule=schedule, **changes)  # type: ignore[arg-type]
        return {name: spec}

    # --- the jobs -------------------------------------------------------------------
    def t_count(self, ctx: RunContext) -> JobResult:
        self.calls.append("t_count")
        return JobResult(records_processed=3, output="counted 3")

    def t_typed(self, ctx: RunContext, count: int, label: str = "") -> int:
        self.calls.append("t_typed")
        return count

    def t_slow(self, ctx: RunContext) -> int:
        self.calls.append("t_slow")
        self.release_slow.wait(20)
        return 1

    def t_fail(self, ctx: RunContext) -> None:
        self.calls.append("t_fail")
        raise RuntimeError("could not connect to postgresql://svc:hunter2@db/x")

    def t_precheck(self, ctx: RunContext) -> int:
        self.calls.append("t_precheck")
        return 1

    def t_steps(self, ctx: RunContext) -> int:
        self.calls.append("t_steps")
        for _step in range(200):
            ctx.check_cancelled()  # an operator's cancel stops it here
            ctx.add_records(1)
            time.sleep(0.05)
        return 200

    def t_silent(self, ctx: RunContext) -> None:
        self.calls.append("t_silent")
