"""Declaring jobs in code, and binding them to a broker as Dramatiq actors.

A job is a function ``fn(ctx: RunContext, **kwargs) -> JobResult | int | None`` plus
its policies. Declaring does not touch a broker, so job modules import cleanly in
any process; :func:`bind_jobs` turns every declared job into an actor on the
broker the process actually uses (with the configured queue prefix).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import dramatiq

from tickwork import queues
from tickwork.errors import RunCancelled, ScheduleError, UnknownJobError
from tickwork.schedules import parse_schedule
from tickwork.settings import Settings
from workers.context import JobResult, RunContext, current_run

JobFn = Callable[..., "JobResult | int | None"]
Precheck = Callable[[RunContext], "str | None"]


@dataclass(frozen=True)
class JobSpec:
    """Everything known about a job before it runs."""

    name: str
    fn: JobFn
    description: str
    schedule: str | None = None  # cron / interval / daily times; None: on demand only
    timezone: str = "UTC"
    queue: str = queues.DEFAULT
    time_limit_s: int | None = None  # None: settings.default_time_limit_s
    max_retries: int | None = None  # None: settings.max_retries
    precheck: Precheck | None = None  # returns a reason to skip, or None to run
    catchup: Literal["skip", "once"] = "skip"
    overlap: Literal["skip", "allow"] = "skip"
    jitter_s: int = 0
    options: dict[str, Any] = field(default_factory=dict)


_jobs: dict[str, JobSpec] = {}


def job(
    name: str | None = None,
    *,
    description: str,
    schedule: str | None = None,
    timezone: str = "UTC",
    queue: str = queues.DEFAULT,
    time_limit_s: int | None = None,
    max_retries: int | None = None,
    precheck: Precheck | None = None,
    catchup: Literal["skip", "once"] = "skip",
    overlap: Literal["skip", "allow"] = "skip",
    jitter_s: int = 0,
) -> Callable[[JobFn], JobFn]:
    """Declare a job. The decorated function is returned unchanged (callable in tests)."""
    if catchup not in ("skip", "once"):
        raise ValueError(f"catchup must be 'skip' or 'once', not {catchup!r}")
    if overlap not in ("skip", "allow"):
        raise ValueError(f"overlap must be 'skip' or 'allow', not {overlap!r}")
    if queue not in queues.ALL:
        raise ValueError(f"queue must be one of {queues.ALL}, not {queue!r}")

    def register(fn: JobFn) -> JobFn:
        job_name = name or fn.__name__
        if schedule is not None:  # refused at import, naming the job, like arq's cron()
            try:
                parse_schedule(schedule, timezone)
            except ScheduleError as exc:
                raise ScheduleError(f"job {job_name!r}: {exc}") from None
        existing = _jobs.get(job_name)
        if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"job {job_name!r} is declared twice")
        _jobs[job_name] = JobSpec(
            name=job_name,
            fn=fn,
            description=description,
            schedule=schedule,
            timezone=timezone,
            queue=queue,
            time_limit_s=time_limit_s,
            max_retries=max_retries,
            precheck=precheck,
            catchup=catchup,
            overlap=overlap,
            jitter_s=jitter_s,
        )
        return fn

    return register


def unregister(name: str) -> None:
    """Forget a declared job (tests declare throw-away jobs)."""
    _jobs.pop(name, None)


def all_jobs() -> dict[str, JobSpec]:
    """Every declared job, by name (:func:`workers.app.import_job_modules` declares them)."""
    return dict(sorted(_jobs.items()))


def get_job(name: str) -> JobSpec:
    try:
        return _jobs[name]
    except KeyError:
        known = ", ".join(sorted(_jobs)) or "none"
        raise UnknownJobError(f"no job named {name!r} is registered (known: {known})") from None


def _run(spec: JobSpec) -> Callable[..., None]:
    def run_job(run_id: int | None = None, **kwargs: Any) -> None:
        ctx = current_run()
        if spec.precheck is not None:
            reason = spec.precheck(ctx)
            if reason:
                ctx.result = JobResult(records_processed=0, output=ctx.output, skipped=reason)
                return
        try:
            result = spec.fn(ctx, **kwargs)
        except RunCancelled as exc:
            # An operator's cancel, seen by the job: not a failure to retry. The run is
            # recorded canceled (its cancel request is on the record).
            ctx.log(f"stopped: {exc}")
            ctx.result = JobResult(records_processed=ctx.records_processed, output="")
            return
        if isinstance(result, int):
            result = JobResult(records_processed=result)
        if result is None:
            result = JobResult()
        ctx.result = result

    run_job.__name__ = spec.name
    run_job.__qualname__ = spec.name
    run_job.__signature__ = _message_signature(spec.fn)  # type: ignore[attr-defined]
    return run_job


def _message_signature(fn: JobFn) -> inspect.Signature:
    """What a message for this job may carry: the job's own parameters after ``ctx``, plus
    ``run_id``. Lets the poison middleware refuse wrong arguments (names and types) before
    anything runs."""
    signature = inspect.signature(fn)
    try:  # real types, not the strings of `from __future__ import annotations`
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in list(signature.parameters.values())[1:]
    ]
    run_id = inspect.Parameter("run_id", inspect.Parameter.KEYWORD_ONLY, default=None)
    var_kw = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    rest = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return signature.replace(parameters=[*rest, run_id, *var_kw])


def bind_jobs(broker: dramatiq.Broker, settings: Settings) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Create one actor per declared job on ``broker``; returns them by job name."""
    actors: dict[str, dramatiq.Actor[Any, Any]] = {}
    for spec in all_jobs().values():
        time_limit_s = spec.time_limit_s or settings.default_time_limit_s
        max_retries = settings.max_retries if spec.max_retries is None else spec.max_retries
        decorate = dramatiq.actor(
            actor_name=spec.name,
            queue_name=settings.queue(spec.queue),
            broker=broker,
            time_limit=time_limit_s * 1000,
            max_retries=max_retries,
            tickwork_job=True,
        )
        actors[spec.name] = decorate(_run(spec))
    return actors
