"""Per-job metrics recorded from real runs on the embedded system (given / when / then)."""

from __future__ import annotations

import datetime as dt

from prometheus_client import REGISTRY

from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun, ScheduledJobConfig
from tests.support.systems import Embedded
from workers.metrics.job_metrics import ExpectedIntervalCollector, FirstRunCollector, job_metrics
from workers.scheduler import control
from workers.scheduler.dispatcher import DispatchReport


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_successful_run_counts_its_status_records_duration_and_success_time(
    embedded: Embedded,
) -> None:
    # Given the counters before,
    runs = value("tickwork_job_runs_total", job="t_count", status="succeeded")
    records = value("tickwork_job_records_processed_total", job="t_count")
    durations = value("tickwork_job_duration_seconds_count", job="t_count")
    before = utcnow().timestamp()
    # when a job that processes 3 records runs,
    control.trigger(embedded.db, embedded.broker, "t_count")
    embedded.drain()
    # then one success, 3 records and one duration are recorded, with its finish time.
    assert value("tickwork_job_runs_total", job="t_count", status="succeeded") == runs + 1
    assert value("tickwork_job_records_processed_total", job="t_count") == records + 3
    assert value("tickwork_job_duration_seconds_count", job="t_count") == durations + 1
    last_success = value("tickwork_job_last_success_timestamp_seconds", job="t_count")
    assert before - 1 <= last_success <= utcnow().timestamp() + 1
    assert value("tickwork_job_last_run_timestamp_seconds", job="t_count") == last_success


def test_a_failing_run_counts_as_failed_and_leaves_last_success_alone(
    embedded: Embedded,
) -> None:
    # Given a job that always fails and has never succeeded,
    failed = value("tickwork_job_runs_total", job="t_fail", status="failed")
    # when it runs (and exhausts its retry),
    control.trigger(embedded.db, embedded.broker, "t_fail")
    embedded.drain()
    # then exactly one failed run is counted (retries are not runs),
    assert value("tickwork_job_runs_total", job="t_fail", status="failed") == failed + 1
    # its last run time is set, and no success time appears.
    assert value("tickwork_job_last_run_timestamp_seconds", job="t_fail") > 0
    assert (
        REGISTRY.get_sample_value("tickwork_job_last_success_timestamp_seconds", {"job": "t_fail"})
        is None
    )


def test_a_precheck_skip_counts_as_skipped_by_the_job(embedded: Embedded) -> None:
    # Given a job whose precheck finds nothing to do,
    skipped = value("tickwork_job_skipped_runs_total", job="t_precheck", by="job")
    runs = value("tickwork_job_runs_total", job="t_precheck", status="skipped")
    # when it is triggered,
    control.trigger(embedded.db, embedded.broker, "t_precheck")
    embedded.drain()
    # then it is counted as a skipped run, skipped by the job itself.
    assert value("tickwork_job_skipped_runs_total", job="t_precheck", by="job") == skipped + 1
    assert value("tickwork_job_runs_total", job="t_precheck", status="skipped") == runs + 1


def test_a_precheck_skip_is_a_sign_of_life_but_not_a_success(embedded: Embedded) -> None:
    # Given a job whose precheck finds nothing to do,
    before = utcnow().timestamp()
    # when it is triggered,
    control.trigger(embedded.db, embedded.broker, "t_precheck")
    embedded.drain()
    # then its last sign of life is now (the dead-man's switch stays quiet),
    alive = value("tickwork_job_last_alive_timestamp_seconds", job="t_precheck")
    assert before - 1 <= alive <= utcnow().timestamp() + 1
    # but it is no success.
    assert (
        REGISTRY.get_sample_value(
            "tickwork_job_last_success_timestamp_seconds", {"job": "t_precheck"}
        )
        is None
    )


def test_a_failure_or_an_overlap_skip_is_no_sign_of_life(embedded: Embedded) -> None:
    # Given a failing job, and an overlap skip recorded for another (it never started),
    control.trigger(embedded.db, embedded.broker, "t_fail")
    embedded.drain()
    now = utcnow()
    with embedded.db.session() as session:
        session.add(
            JobRun(job_name="t_silent", status="skipped", skip_reason="overlap", finished_at=now)
        )
    # when the runs are recorded and the history is read again,
    job_metrics().seed(embedded.db)
    # then neither has a sign of life.
    for job in ("t_fail", "t_silent"):
        assert (
            REGISTRY.get_sample_value("tickwork_job_last_alive_timestamp_seconds", {"job": job})
            is None
        ), job


def test_overlap_skips_reported_by_the_dispatcher_are_counted() -> None:
    # Given a dispatch report with a slot skipped for overlap,
    now = utcnow()
    report = DispatchReport(tick_at=now, skipped=[("t_slow", now, "previous run still going")])
    before = value("tickwork_job_skipped_runs_total", job="t_slow", by="overlap")
    # when the on-tick hook records it,
    job_metrics().record_dispatch(report, now)
    # then the overlap skip is counted.
    assert value("tickwork_job_skipped_runs_total", job="t_slow", by="overlap") == before + 1


def test_every_registered_job_has_its_counters_at_zero_before_it_runs(
    embedded: Embedded,
) -> None:
    # Given a freshly built runtime, then every job's failure counter exists already
    # (so alert rules using increase() see its first failure).
    assert (
        REGISTRY.get_sample_value(
            "tickwork_job_runs_total", {"job": "t_silent", "status": "failed"}
        )
        is not None
    )
    assert (
        REGISTRY.get_sample_value(
            "tickwork_job_skipped_runs_total", {"job": "heartbeat", "by": "overlap"}
        )
        is not None
    )


def test_last_success_is_seeded_from_history_after_a_restart(embedded: Embedded) -> None:
    # Given a success recorded in the database long ago (by a worker since restarted),
    finished = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with embedded.db.session() as session:
        session.add(
            JobRun(
                job_name="t_seeded",
                status="succeeded",
                started_at=finished - dt.timedelta(seconds=2),
                finished_at=finished,
            )
        )
    # when the metrics are seeded,
    job_metrics().seed(embedded.db)
    # then the gauges show it.
    assert value("tickwork_job_last_success_timestamp_seconds", job="t_seeded") == (
        finished.timestamp()
    )
    assert value("tickwork_job_last_run_timestamp_seconds", job="t_seeded") == finished.timestamp()
    assert value("tickwork_job_last_alive_timestamp_seconds", job="t_seeded") == (
        finished.timestamp()
    )


def test_a_precheck_skip_in_history_seeds_the_last_sign_of_life(embedded: Embedded) -> None:
    # Given a run skipped by its precheck long ago (it started, then found nothing),
    finished = dt.datetime(2030, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    with embedded.db.session() as session:
        session.add(
            JobRun(
                job_name="t_seeded_skip",
                status="skipped",
                skip_reason="nothing to do",
                started_at=finished - dt.timedelta(seconds=1),
                finished_at=finished,
            )
        )
    # when the metrics are seeded, then it is the last sign of life, not a success.
    job_metrics().seed(embedded.db)
    assert value("tickwork_job_last_alive_timestamp_seconds", job="t_seeded_skip") == (
        finished.timestamp()
    )
    assert (
        REGISTRY.get_sample_value(
            "tickwork_job_last_success_timestamp_seconds", {"job": "t_seeded_skip"}
        )
        is None
    )


def _first_runs(collector: FirstRunCollector) -> dict[str, float]:
    (family,) = list(collector.collect())
    return {s.labels["job"]: s.value for s in family.samples}


def test_first_run_time_comes_from_the_history_and_outlives_pruning(
    embedded: Embedded,
) -> None:
    collector = FirstRunCollector(embedded.db)
    # Given a job that never ran: no first-run time,
    assert "t_count" not in _first_runs(collector)
    # when it runs,
    before = utcnow().timestamp()
    control.trigger(embedded.db, embedded.broker, "t_count")
    embedded.drain()
    # then its first run is when it was queued,
    first = _first_runs(collector)["t_count"]
    assert before - 1 <= first <= utcnow().timestamp() + 1
    # and stays so when the history is pruned (the alert counts from the first run).
    with embedded.db.session() as session:
        session.query(JobRun).filter(JobRun.job_name == "t_count").delete()
    assert _first_runs(collector)["t_count"] == first


def _intervals(db: Database) -> dict[str, float]:
    (family,) = list(ExpectedIntervalCollector(db).collect())
    return {s.labels["job"]: s.value for s in family.samples}


def test_expected_interval_follows_the_effective_schedule(embedded: Embedded) -> None:
    # Given the built-in jobs, the every-minute heartbeat expects a run every 60 s,
    assert _intervals(embedded.db)["heartbeat"] == 60.0
    # on-demand jobs expect nothing,
    assert "t_count" not in _intervals(embedded.db)
    # an interval override changes the expectation,
    control.set_schedule_override(embedded.db, "heartbeat", interval="10 minutes")
    assert _intervals(embedded.db)["heartbeat"] == 600.0
    # daily times expect the largest gap between them,
    control.set_schedule_override(embedded.db, "heartbeat", times="06:00,18:00,20:00")
    assert _intervals(embedded.db)["heartbeat"] == 12 * 3600.0  # 06:00 -> 18:00
    # and a disabled job expects nothing (its dead-man's switch is off).
    control.set_enabled(embedded.db, "heartbeat", False)
    assert "heartbeat" not in _intervals(embedded.db)
    with embedded.db.session() as session:
        config = session.get(ScheduledJobConfig, "heartbeat")
        assert config is not None and config.enabled is False
