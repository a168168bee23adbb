"""Declaring jobs in code, and binding them to a broker as Dramatiq actors.

A job is a function ``fn(ctx: RunContext, **kwargs) -> JobResult | int | None`` plus
its policies. Declaring does not touch a broker, so job modules import cleanly in
any process; :func:`bind_jobs` turns every declared job into an actor on the
broker the process actually uses (with the configured queue prefix).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dramatiq
import pydantic

from tickwork import queues
from tickwork.errors import (
    ConfigError,
    RunCancelled,
    ScheduleError,
    UnknownJobError,
    ValidationError,
)
from tickwork.schedules import parse_schedule
from tickwork.settings import Settings
from workers.context import JobResult, RunContext, current_run

JobFn = Callable[..., "JobResult | int | None"]
# What a slot does when it comes while a run of its job (and entry) is going
# (docs/WORKFLOWS.md): skip it, run alongside, wait (at most one waiting), or ask the
# running one to cancel and start once it has stopped.
OVERLAP_POLICIES = ("skip", "allow", "buffer_one", "replace", "cancel_other")
Precheck = Callable[[RunContext], "str | None"]


@dataclass(frozen=True)
class Entry:
    """One more schedule of a job, with the keyword arguments its runs get ("sync source
    A hourly, B daily": one function, two entries). Its slots are keyed by (job, entry
    name, due time), so two entries due at the same instant both run."""

    name: str
    schedule: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timezone: str | None = None  # None: the job's


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
    overlap: Literal["skip", "allow", "buffer_one", "replace"] = "skip"
    jitter_s: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    # Workflows (docs/WORKFLOWS.md): jobs queued when a run succeeds; more schedule
    # entries with their arguments; disable the job after this many failed runs in a row.
    then: tuple[str, ...] = ()
    entries: tuple[Entry, ...] = ()
    pause_after_failures: int | None = None
    # "last_start": an interval counts from the last run's start (pgeu: a manual run
    # shifts the next one); "epoch": fixed slots (the default).
    interval_from: Literal["epoch", "last_start"] = "epoch"


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
    overlap: Literal["skip", "allow", "buffer_one", "replace", "cancel_other"] = "skip",
    jitter_s: int = 0,
    then: Iterable[str] = (),
    entries: Iterable[Entry] = (),
    pause_after_failures: int | None = None,
    interval_from: Literal["epoch", "last_start"] = "epoch",
) -> Callable[[JobFn], JobFn]:
    """Declare a job. The decorated function is returned unchanged (callable in tests).

    ``then``: jobs queued, once each, when a run of this one succeeds (checked at start-up
    and by ``tickwork check``: known jobs, no cycle). ``entries``: more schedules, each
    with keyword arguments. ``pause_after_failures``: N failed runs in a row disable it.
    """
    chained = tuple(then)
    more = tuple(entries)
    if isinstance(then, str):
        raise ValueError(f"then must be a list of job names, not the string {then!r}")
    if pause_after_failures is not None and pause_after_failures < 1:
        raise ValueError(f"pause_after_failures must be 1 or more, not {pause_after_failures}")
    if catchup not in ("skip", "once"):
        raise ValueError(f"catchup must be 'skip' or 'once', not {catchup!r}")
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}, not {overlap!r}")
    # Temporal's name for Kubernetes' Replace: one behaviour, two names users know.
    policy: Literal["skip", "allow", "buffer_one", "replace"] = (
        "replace" if overlap == "cancel_other" else overlap
    )
    if queue not in queues.ALL:
        raise ValueError(f"queue must be one of {queues.ALL}, not {queue!r}")

    def register(fn: JobFn) -> JobFn:
        job_name = name or fn.__name__
        if schedule is not None:  # refused at import, naming the job, like arq's cron()
            try:
                parse_schedule(schedule, timezone)
            except ScheduleError as exc:
                raise ScheduleError(f"job {job_name!r}: {exc}") from None
        _check_entries(job_name, fn, more, timezone)
        if schedule is not None:  # its scheduled runs are called with no arguments
            try:
                check_arguments(job_name, fn, {})
            except ValidationError as exc:
                raise ValidationError(
                    f"job {job_name!r} has a schedule but needs arguments ({exc}): give "
                    "them defaults, or schedule it through entries=[Entry(..., kwargs)]"
                ) from None
        if interval_from not in ("epoch", "last_start"):
            raise ValueError(
                f"interval_from must be 'epoch' or 'last_start', not {interval_from!r}"
            )
        if interval_from == "last_start" and (
            schedule is None or parse_schedule(schedule, timezone).kind != "interval"
        ):
            raise ScheduleError(
                f"job {job_name!r}: interval_from='last_start' needs an interval schedule "
                f"('10 minutes', 'every HH:MM:SS'), not {schedule!r}"
            )
        if len(set(chained)) != len(chained):
            raise ValueError(f"job {job_name!r}: then names a job twice: {list(chained)}")
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
            overlap=policy,
            jitter_s=jitter_s,
            then=chained,
            entries=more,
            pause_after_failures=pause_after_failures,
            interval_from=interval_from,
        )
        return fn

    return register


def _check_entries(job_name: str, fn: JobFn, entries: tuple[Entry, ...], timezone: str) -> None:
    """Refuse at declaration an entry with a bad name, schedule or arguments."""
    seen: set[str] = set()
    for entry in entries:
        if not entry.name or len(entry.name) > 100 or entry.name in seen:
            raise ValueError(f"job {job_name!r}: entry names must be unique, 1-100 characters")
        seen.add(entry.name)
        try:
            parse_schedule(entry.schedule, entry.timezone or timezone)
        except ScheduleError as exc:
            raise ScheduleError(f"job {job_name!r}, entry {entry.name!r}: {exc}") from None
        try:
            check_arguments(job_name, fn, dict(entry.kwargs))
        except ValidationError as exc:
            raise ValidationError(f"entry {entry.name!r}: {exc}") from None


def check_chains(jobs: Mapping[str, JobSpec]) -> None:
    """Every ``then`` names a declared job that runs without arguments, and no chain
    leads back to where it started; raises :class:`ConfigError` naming the job (start-up
    and ``tickwork check``)."""
    for spec in jobs.values():
        for child in spec.then:
            if child not in jobs:
                known = ", ".join(sorted(jobs))
                raise ConfigError(
                    f"job {spec.name!r}: then names {child!r}, which is not a registered "
                    f"job (known: {known})"
                )
            try:  # a chained run gets no arguments: a job that needs some could never run
                check_arguments(child, jobs[child].fn, {})
            except ValidationError as exc:
                raise ConfigError(f"job {spec.name!r}: then names {child!r}: {exc}") from None
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for child in jobs[name].then:
            if state.get(child) == 1:
                cycle = [*path[path.index(child) :], child]
                raise ConfigError(f"chain cycle refused: {' -> '.join(cycle)}")
            if child not in state:
                visit(child, [*path, child])
        state[name] = 2

    for name in jobs:
        if name not in state:
            visit(name, [name])


def check_arguments(job_name: str, fn: JobFn, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for a run of the job, checked against its signature before
    anything is queued: unknown or missing names and values that cannot be of the
    parameter's type raise :class:`ValidationError` naming the field."""
    signature = _message_signature(fn)
    if "run_id" in kwargs:
        raise ValidationError(f"argument 'run_id' of {job_name}: reserved for tickwork")
    try:
        bound = signature.bind(**kwargs)
    except TypeError as exc:
        raise ValidationError(f"arguments do not fit {job_name}: {exc}") from None
    for name, value in bound.arguments.items():
        param = signature.parameters[name]
        hint = param.annotation
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if hint is inspect.Parameter.empty or hint is Any or isinstance(hint, str):
            continue
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
                hint, config=pydantic.ConfigDict(strict=True)
            )
        except Exception:  # a type pydantic cannot check; the job sees what it gets
            continue
        try:
            adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            raise ValidationError(f"argument {name!r} of {job_name}: {problem}") from None
    return dict(kwargs)


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
    check_chains(all_jobs())  # a chain to an unknown job, or a cycle, stops start-up
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
