"""What operators see about each job: schedule, words, next run, last run/success/skip.

Shared by ``tickwork jobs`` and the admin API, so both always agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun, ScheduledJobConfig, SchedulerState
from workers.registry import all_jobs, get_job
from workers.scheduler.effective import effective_schedule, entry_schedules, last_starts


@dataclass
class JobStatus:
    name: str
    description: str
    schedule: str | None
    schedule_words: str
    schedule_source: str
    timezone: str
    enabled: bool
    notify_on_success: bool
    next_run: dt.datetime | None
    last_run: dt.datetime | None
    last_status: str | None
    last_success: dt.datetime | None
    last_skip: dt.datetime | None
    expected_interval_s: float | None
    # The operator's override as stored (the page's edit form starts from it).
    override_times: str | None = None
    override_interval_s: int | None = None
    # Workflows (docs/WORKFLOWS.md): chain, more schedule entries, policies.
    then: list[str] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    overlap: str = "skip"
    catchup: str = "skip"
    interval_from: str = "epoch"
    pause_after_failures: int | None = None
    consecutive_failures: int = 0
    disabled_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dt.datetime):
                out[key] = value.isoformat()
        return out


def _latest(db: Database, *conditions: Any) -> dict[str, tuple[dt.datetime, str]]:
    with db.session() as session:
        sub = (
            select(JobRun.job_name, func.max(JobRun.id).label("id"))
            .where(*conditions)
            .group_by(JobRun.job_name)
            .subquery()
        )
        rows = session.execute(
            select(
                JobRun.job_name,
                JobRun.finished_at,
                JobRun.started_at,
                JobRun.queued_at,
                JobRun.status,
            ).join(sub, JobRun.id == sub.c.id)
        )
        return {
            name: (finished or started or queued, status)
            for name, finished, started, queued, status in rows
        }


def hold_state(db: Database) -> tuple[bool, dt.datetime | None]:
    """Whether jobs are held (``tickwork hold``), and since when."""
    with db.session() as session:
        state = session.get(SchedulerState, 1)
        return (bool(state and state.held), state.held_at if state else None)


def job_statuses(db: Database, now: dt.datetime | None = None) -> list[JobStatus]:
    now = now or utcnow()
    with db.session() as session:
        configs = {c.job_name: c for c in session.scalars(select(ScheduledJobConfig))}
        state = session.get(SchedulerState, 1)
        started = last_starts(session, all_jobs().values())
    held = bool(state and state.held)
    last_any = _latest(db, JobRun.status != "queued")
    last_ok = _latest(db, JobRun.status == "succeeded")
    last_skip = _latest(db, JobRun.status == "skipped")
    out = []
    for spec in all_jobs().values():
        config = configs.get(spec.name)
        eff = effective_schedule(spec, config, started.get(spec.name))
        shown = spec.schedule
        if eff.source != "default" and eff.schedule is not None:
            shown = eff.schedule.expression
        next_run = None
        entries = entry_schedules(spec, config, started.get(spec.name))
        if entries and eff.enabled and not held:
            next_run = min(e.schedule.next_after(now) for e in entries)
        out.append(
            JobStatus(
                name=spec.name,
                description=spec.description,
                schedule=shown,
                schedule_words=eff.schedule.words()
                if eff.schedule
                else ("its entries' schedules" if spec.entries else "on demand"),
                schedule_source=eff.source,
                timezone=spec.timezone,
                enabled=eff.enabled,
                notify_on_success=eff.notify_on_success,
                next_run=next_run,
                last_run=last_any.get(spec.name, (None, None))[0],
                last_status=last_any.get(spec.name, (None, None))[1],
                last_success=last_ok.get(spec.name, (None, None))[0],
                last_skip=last_skip.get(spec.name, (None, None))[0],
                expected_interval_s=eff.schedule.nominal_interval_s() if eff.schedule else None,
                override_times=config.override_times if config else None,
                override_interval_s=config.override_interval_s if config else None,
                then=list(spec.then),
                entries=[
                    {
                        "name": e.entry,
                        "schedule": e.schedule.expression,
                        "schedule_words": e.schedule.words(),
                        "args": e.kwargs or {},
                    }
                    for e in entries
                    if e.entry
                ],
                overlap=spec.overlap,
                catchup=spec.catchup,
                interval_from=spec.interval_from,
                pause_after_failures=spec.pause_after_failures,
                consecutive_failures=config.consecutive_failures if config else 0,
                disabled_reason=config.disabled_reason if config else None,
            )
        )
    return out


def run_history(
    db: Database, job_name: str, limit: int = 20, failures_only: bool = False
) -> list[JobRun]:
    get_job(job_name)
    if limit < 1 or limit > 1000:
        raise ValueError("limit must be between 1 and 1000")
    query = select(JobRun).where(JobRun.job_name == job_name)
    if failures_only:
        query = query.where(JobRun.status == "failed")
    with db.session() as session:
        return list(session.scalars(query.order_by(JobRun.id.desc()).limit(limit)))


def recent_failures(
    db: Database,
    *,
    job_name: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
) -> list[JobRun]:
    """The failures feed (Barycenter's ``jobLogs(onlyFailures)``): failed runs of every
    job (or one), newest first, finished in [since, until)."""
    if job_name is not None:
        get_job(job_name)
    if limit < 1 or limit > 1000:
        raise ValueError("limit must be between 1 and 1000")
    query = select(JobRun).where(JobRun.status == "failed")
    if job_name is not None:
        query = query.where(JobRun.job_name == job_name)
    if since is not None:
        query = query.where(JobRun.finished_at >= since)
    if until is not None:
        query = query.where(JobRun.finished_at < until)
    with db.session() as session:
        order = (JobRun.finished_at.desc(), JobRun.id.desc())
        return list(session.scalars(query.order_by(*order).limit(limit)))


def get_run(db: Database, run_id: int) -> JobRun | None:
    with db.session() as session:
        return session.get(JobRun, run_id)
