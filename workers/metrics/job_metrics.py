"""Per-job metrics: what ran, how it ended, how long it took, and what to expect.

Recorded from the run records (a :class:`RunRecordMiddleware` ``on_finished`` hook),
so they count exactly what history shows, including runs failed by the redelivery
guard and runs reaped as "worker lost". Runs the dispatcher skips for overlap never
reach a worker; the on-tick hook counts those.

The last-run / last-success / last-alive gauges are seeded from the database when the
metrics are first set up in a process, so a restarted worker does not forget when a job
last showed a sign of life (which would silence the dead-man's-switch alert). A sign of
life is a success *or* a skip by the job's own precheck (it ran and found nothing to
do): an hourly cleanup with nothing to clean is healthy. Overlap skips are not: the job
never started. The expected interval comes from each job's *effective* schedule
(operator overrides included) at scrape time; disabled and on-demand jobs have none, so
they never trip that alert. The first run of each job in the history (also read at
scrape time) lets a job that has *never* shown a sign of life alert too.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select

from schema.engine import Database
from schema.run_lifecycle import OVERLAP_REASON
from schema.scheduling import JobRun, ScheduledJobConfig
from workers.registry import all_jobs
from workers.scheduler.effective import effective_schedule

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.core import Metric

    from workers.scheduler.dispatcher import DispatchReport

logger = logging.getLogger(__name__)

# Jobs run from milliseconds (cleanups with nothing to do) to an hour (installs).
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass
class JobMetrics:
    runs: Counter
    duration: Histogram
    records: Counter
    last_run: Gauge
    last_success: Gauge
    last_alive: Gauge
    skipped: Counter
    deferred: Counter

    def record_finished(self, run: JobRun) -> None:
        """``on_finished`` hook: one finished run (succeeded, failed, skipped, canceled)."""
        job = run.job_name
        self.runs.labels(job=job, status=run.status).inc()
        if run.records_processed:
            self.records.labels(job=job).inc(run.records_processed)
        finished = run.finished_at
        if finished is not None:
            stamp = _timestamp(finished)
            self.last_run.labels(job=job).set(stamp)
            if run.status == "succeeded":
                self.last_success.labels(job=job).set(stamp)
            if is_sign_of_life(run.status, run.started_at):
                self.last_alive.labels(job=job).set(stamp)
            if run.started_at is not None:
                seconds = (_aware(finished) - _aware(run.started_at)).total_seconds()
                self.duration.labels(job=job).observe(max(seconds, 0.0))
        if run.status == "skipped":
            by = "overlap" if run.skip_reason == OVERLAP_REASON else "job"
            self.skipped.labels(job=job, by=by).inc()

    def record_dispatch(self, report: DispatchReport, processed_at: dt.datetime) -> None:
        """On-tick hook: slots the dispatcher skipped because a run was still going."""
        for job, _slot, _reason in report.skipped:
            self.runs.labels(job=job, status="skipped").inc()
            self.skipped.labels(job=job, by="overlap").inc()

    def seed(self, db: Database) -> None:
        """Load the last run / success / sign of life of every job from the run history."""
        with db.session() as session:
            finished = session.execute(
                select(JobRun.job_name, func.max(JobRun.finished_at))
                .where(JobRun.finished_at.is_not(None))
                .group_by(JobRun.job_name)
            ).all()
            succeeded = session.execute(
                select(JobRun.job_name, func.max(JobRun.finished_at))
                .where(JobRun.status == "succeeded", JobRun.finished_at.is_not(None))
                .group_by(JobRun.job_name)
            ).all()
            alive = session.execute(
                select(JobRun.job_name, func.max(JobRun.finished_at))
                .where(SIGN_OF_LIFE, JobRun.finished_at.is_not(None))
                .group_by(JobRun.job_name)
            ).all()
        for job, at in finished:
            if at is not None:
                self.last_run.labels(job=job).set(_timestamp(at))
        for job, at in succeeded:
            if at is not None:
                self.last_success.labels(job=job).set(_timestamp(at))
        for job, at in alive:
            if at is not None:
                self.last_alive.labels(job=job).set(_timestamp(at))


def is_sign_of_life(status: str, started_at: dt.datetime | None) -> bool:
    """A success, or a skip by the job's precheck (a skip after it started: overlap
    skips never start, see ``schema.run_lifecycle.MOVES``)."""
    return status == "succeeded" or (status == "skipped" and started_at is not None)


# The same predicate as SQL, for seeding from the history.
SIGN_OF_LIFE = or_(
    JobRun.status == "succeeded",
    and_(JobRun.status == "skipped", JobRun.started_at.is_not(None)),
)


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _timestamp(t: dt.datetime) -> float:
    return _aware(t).timestamp()


_lock = threading.Lock()
_metrics: JobMetrics | None = None


def job_metrics() -> JobMetrics:
    """The process's job metrics, created on first use (after multiprocess set-up)."""
    global _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Gauge, Histogram

            _metrics = JobMetrics(
                runs=Counter(
                    "tickwork_job_runs_total",
                    "Finished job runs, by final status (succeeded, failed, skipped, canceled).",
                    ["job", "status"],
                ),
                duration=Histogram(
                    "tickwork_job_duration_seconds",
                    "Wall-clock time from start to finish of a job run.",
                    ["job"],
                    buckets=DURATION_BUCKETS_S,
                ),
                records=Counter(
                    "tickwork_job_records_processed_total",
                    "Records processed by job runs (rows deleted, items synced...).",
                    ["job"],
                ),
                last_run=Gauge(
                    "tickwork_job_last_run_timestamp_seconds",
                    "When the job last finished a run, whatever its status (Unix time).",
                    ["job"],
                    multiprocess_mode="max",
                ),
                last_success=Gauge(
                    "tickwork_job_last_success_timestamp_seconds",
                    "When the job last finished a run successfully (Unix time).",
                    ["job"],
                    multiprocess_mode="max",
                ),
                last_alive=Gauge(
                    "tickwork_job_last_alive_timestamp_seconds",
                    "When the job last showed a sign of life (Unix time): a successful run, "
                    "or a run its precheck skipped because there was nothing to do.",
                    ["job"],
                    multiprocess_mode="max",
                ),
                skipped=Counter(
                    "tickwork_job_skipped_runs_total",
                    "Runs skipped: by='job' (its precheck found nothing to do) or "
                    "by='overlap' (the previous run was still going).",
                    ["job", "by"],
                ),
                deferred=Counter(
                    "tickwork_job_deliveries_deferred_total",
                    "Second deliveries of a run that was still executing (broker restart, or "
                    "RabbitMQ's consumer_timeout shorter than the job), deferred, not run.",
                    ["job"],
                ),
            )
        return _metrics


def count_deferred_delivery(job: str) -> None:
    """Count a deferred duplicate delivery, in processes whose job metrics are set up."""
    if _metrics is not None:
        _metrics.deferred.labels(job=job).inc()


def install_job_metrics(db: Database) -> JobMetrics:
    """Set up the metrics for a worker process, seeded from history (best effort).

    Every job's counters start at 0, so ``increase()`` in alert rules sees the first
    failure of a job (a series that appears at 1 has no increase to measure).
    """
    metrics = job_metrics()
    for name in all_jobs():
        for status in ("succeeded", "failed", "skipped"):
            metrics.runs.labels(job=name, status=status)
        for by in ("job", "overlap"):
            metrics.skipped.labels(job=name, by=by)
        metrics.deferred.labels(job=name)
        metrics.records.labels(job=name)
    try:
        metrics.seed(db)
    except Exception:
        logger.warning("job metrics: could not read run history; last-run gauges start empty")
    return metrics


class ExpectedIntervalCollector:
    """``tickwork_job_expected_interval_seconds{job}`` from each job's effective schedule."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily  # after PROMETHEUS_MULTIPROC_DIR

        family = GaugeMetricFamily(
            "tickwork_job_expected_interval_seconds",
            "Longest gap between two scheduled runs of an enabled job (its effective "
            "schedule); the dead-man's switch alerts when no success is seen for longer.",
            labels=["job"],
        )
        with self._db.session() as session:
            configs = {c.job_name: c for c in session.scalars(select(ScheduledJobConfig))}
        for spec in all_jobs().values():
            try:
                effective = effective_schedule(spec, configs.get(spec.name))
            except Exception:  # a bad override is reported by the dispatcher
                continue
            if effective.schedule is None or not effective.enabled:
                continue
            family.add_metric([spec.name], effective.schedule.nominal_interval_s())
        yield family

    def describe(self) -> list[Any]:
        return []  # collected at scrape time from the database


class FirstRunCollector:
    """``tickwork_job_first_run_timestamp_seconds{job}``: when the job's first run in the
    history was recorded (queued or skipped by the dispatcher).

    A job that has never shown a sign of life has no ``last_alive`` gauge to age; the
    "never succeeded" alert counts from this instead. A job's first run does not change,
    so once found it is kept for the life of the process (pruning old history later does
    not move it forward); only jobs not seen yet are looked up at each scrape, through
    the ``(job_name, queued_at)`` index.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._first: dict[str, float] = {}

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        missing = [name for name in all_jobs() if name not in self._first]
        if missing:
            with self._db.session() as session:
                for name in missing:
                    at = session.scalar(
                        select(func.min(JobRun.queued_at)).where(JobRun.job_name == name)
                    )
                    if at is not None:
                        self._first[name] = _timestamp(at)
        family = GaugeMetricFamily(
            "tickwork_job_first_run_timestamp_seconds",
            "When the job's first run in the history was recorded (Unix time); the "
            "'never succeeded' alert counts from here for a job with no sign of life yet.",
            labels=["job"],
        )
        for name, stamp in sorted(self._first.items()):
            family.add_metric([name], stamp)
        yield family

    def describe(self) -> list[Any]:
        return []  # collected at scrape time from the database
