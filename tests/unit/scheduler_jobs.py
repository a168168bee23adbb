"""Throw-away jobs for scheduler tests. They have no schedule of their own (so no
other test ever dispatches them); tests give them one with :func:`scheduled`."""

from __future__ import annotations

import dataclasses
import threading

from workers.context import JobResult, RunContext
from workers.registry import JobSpec, get_job, job

calls: list[str] = []
release_slow = threading.Event()


@job(description="test: counts its calls")
def t_count(ctx: RunContext) -> JobResult:
    calls.append("t_count")
    return JobResult(records_processed=3, output="counted 3")


@job(description="test: typed parameters")
def t_typed(ctx: RunContext, count: int, label: str = "") -> int:
    calls.append("t_typed")
    return count


@job(description="test: blocks until released", time_limit_s=30)
def t_slow(ctx: RunContext) -> int:
    calls.append("t_slow")
    release_slow.wait(20)
    return 1


@job(description="test: always fails", max_retries=1)
def t_fail(ctx: RunContext) -> None:
    calls.append("t_fail")
    raise RuntimeError("could not connect to postgresql://svc:hunter2@db/x")


def _nothing_to_do(ctx: RunContext) -> str | None:
    return "nothing pending"


@job(description="test: precheck always skips", precheck=_nothing_to_do)
def t_precheck(ctx: RunContext) -> int:
    calls.append("t_precheck")
    return 1


@job(description="test: silent success")
def t_silent(ctx: RunContext) -> None:
    calls.append("t_silent")


def scheduled(name: str, schedule: str = "* * * * *", **changes: object) -> dict[str, JobSpec]:
    spec = dataclasses.replace(get_job(name), schedule=schedule, **changes)  # type: ignore[arg-type]
    return {name: spec}
