"""Maintenance jobs at their boundaries, on PostgreSQL and on SQLite (same results: the
``db`` fixture runs each test on both).

Each duty is checked just before its lifetime, exactly at it and just after, with a
frozen ``utcnow`` so the boundary is exact.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from schema.catalog import Plan, Product, Version
from schema.engine import Database
from schema.identity import (
    ApiToken,
    DeviceCode,
    OAuthToken,
    RefreshToken,
    Session,
    User,
    WebauthnChallenge,
)
from schema.installs import Job, PreflightResult
from schema.sync import RemoteResource
from workers.batching import delete_in_batches
from workers.context import JobResult, RunContext
from workers.jobs import barycenter, metadeploy_maintenance, sync_jobs

NOW = dt.datetime(2026, 11, 24, 12, 0, 0, tzinfo=dt.UTC)
TICK = dt.timedelta(seconds=1)


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (metadeploy_maintenance, barycenter, sync_jobs):
        monkeypatch.setattr(module, "utcnow", lambda: NOW)


def run(job: Any, db: Database, **settings: Any) -> JobResult:
    config = db.settings.model_copy(update=settings) if settings else db.settings
    ctx = RunContext(run_id=0, job_name=job.__name__, scheduled_for=None, settings=config, db=db)
    result: JobResult = job(ctx)
    return result


def count(db: Database, model: Any, *where: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def user(db: Database, name: str, **values: Any) -> int:
    with db.session() as s:
        row = User(username=name, **values)
        s.add(row)
        s.flush()
        return row.id


def plan(db: Database) -> int:
    with db.session() as s:
        product = Product(slug=f"p{uuid.uuid4().hex[:6]}", title="P", description="")
        version = Version(product=product, label="1")
        row = Plan(version=version, slug="plan", title="Plan", description="")
        s.add_all([product, version, row])
        s.flush()
        return row.id


# --- cleanup_user_data ---------------------------------------------------------------
def test_started_jobs_past_limit_plus_grace_are_canceled(db: Database) -> None:
    limit = dt.timedelta(seconds=db.settings.job_time_limit_s + db.settings.dead_job_grace_s)
    plan_id = plan(db)
    with db.session() as s:
        for org, started in (
            ("before", NOW - limit + TICK),
            ("at", NOW - limit),
            ("after", NOW - limit - TICK),
        ):
            s.add(Job(plan_id=plan_id, org_id=org, status="started", started_at=started))
    result = run(metadeploy_maintenance.cleanup_user_data, db)
    with db.session() as s:
        jobs = {j.org_id: j for j in s.scalars(select(Job))}
    # Exactly at the limit is not yet past it; one second after is.
    assert jobs["before"].status == "started" and jobs["at"].status == "started"
    assert jobs["after"].status == "canceled" and jobs["after"].canceled_at == NOW
    assert "presumed lost" in (jobs["after"].exception or "")
    assert "dead jobs canceled: 1" in result.output


def test_oauth_tokens_past_lifetime_deleted_unless_user_has_running_work(db: Database) -> None:
    lifetime = dt.timedelta(minutes=db.settings.token_lifetime_minutes)
    idle, busy_job, busy_preflight = (user(db, n) for n in ("idle", "busyjob", "busypre"))
    plan_id = plan(db)
    with db.session() as s:
        for uid in (idle, busy_job, busy_preflight):
            for age in (lifetime - TICK, lifetime, lifetime + TICK):
                s.add(OAuthToken(user_id=uid, access_token="secret", created_at=NOW - age))
        s.add(Job(plan_id=plan_id, org_id="o1", user_id=busy_job, status="started"))
        s.add(PreflightResult(plan_id=plan_id, org_id="o2", user_id=busy_preflight))
    result = run(metadeploy_maintenance.cleanup_user_data, db)
    assert count(db, OAuthToken, OAuthToken.user_id == idle) == 2  # only the older one went
    assert count(db, OAuthToken, OAuthToken.user_id == busy_job) == 3
    assert count(db, OAuthToken, OAuthToken.user_id == busy_preflight) == 3
    assert "OAuth tokens deleted: 1" in result.output


def test_idle_non_staff_users_deleted_staff_kept_jobs_kept(db: Database) -> None:
    idle = dt.timedelta(days=db.settings.inactive_user_days)
    plan_id = plan(db)
    gone = user(db, "gone", last_login=NOW - idle - TICK)
    user(db, "at", last_login=NOW - idle)
    user(db, "staff", is_staff=True, last_login=NOW - idle * 10)
    user(db, "never", created_at=NOW - idle - TICK)  # never logged in, account old
    with db.session() as s:
        s.add(Job(plan_id=plan_id, org_id="o", user_id=gone, status="complete"))
    run(metadeploy_maintenance.cleanup_user_data, db)
    with db.session() as s:
        names = set(s.scalars(select(User.username)))
        job = s.scalars(select(Job)).one()
    assert names == {"at", "staff"}
    assert job.user_id is None  # the job is kept, its user set null


def test_exceptions_cleared_after_retention(db: Database) -> None:
    keep = dt.timedelta(days=db.settings.exception_retention_days)
    plan_id = plan(db)
    with db.session() as s:
        s.add(
            Job(plan_id=plan_id, org_id="old", exception="schema x", created_at=NOW - keep - TICK)
        )
        s.add(Job(plan_id=plan_id, org_id="at", exception="schema y", created_at=NOW - keep))
        s.add(
            PreflightResult(
                plan_id=plan_id, org_id="old", exception="e", created_at=NOW - keep - TICK
            )
        )
    run(metadeploy_maintenance.cleanup_user_data, db)
    with db.session() as s:
        jobs = {j.org_id: j.exception for j in s.scalars(select(Job))}
        pre = s.scalars(select(PreflightResult)).one()
    assert jobs == {"old": None, "at": "schema y"} and pre.exception is None


def test_api_tokens_older_than_limit_deleted(db: Database) -> None:
    age = dt.timedelta(days=db.settings.api_token_expire_after_days)
    with db.session() as s:
        for n, created in enumerate((NOW - age - TICK, NOW - age, NOW - age + TICK)):
            s.add(ApiToken(name=f"t{n}", token_hash=f"h{n}", prefix="tw", created_at=created))
    run(metadeploy_maintenance.cleanup_user_data, db)
    assert count(db, ApiToken) == 2


def test_api_tokens_past_their_stored_expiry_deleted(db: Database) -> None:
    # Given tokens with their own expiry (created now), one past it and one not,
    with db.session() as s:
        for n, expires in enumerate((NOW - TICK, NOW + TICK)):
            s.add(ApiToken(name=f"e{n}", token_hash=f"e{n}", prefix="tw", expires_at=expires))
    # when the cleanup runs, then only the expired one is deleted.
    run(metadeploy_maintenance.cleanup_user_data, db)
    with db.session() as s:
        assert [t.name for t in s.scalars(select(ApiToken))] == ["e1"]


def test_lifetimes_come_from_settings(db: Database) -> None:
    with db.session() as s:
        s.add(
            ApiToken(name="t", token_hash="h", prefix="tw", created_at=NOW - dt.timedelta(days=2))
        )
    run(metadeploy_maintenance.cleanup_user_data, db)
    assert count(db, ApiToken) == 1
    run(metadeploy_maintenance.cleanup_user_data, db, api_token_expire_after_days=1)
    assert count(db, ApiToken) == 0


# --- preflights and plan runtimes ----------------------------------------------------------
def test_preflights_expire_and_stuck_ones_are_canceled(db: Database) -> None:
    life = dt.timedelta(minutes=db.settings.preflight_lifetime_minutes)
    plan_id = plan(db)
    with db.session() as s:
        for org, status, age in (
            ("fresh", "complete", life - TICK),
            ("at", "complete", life),
            ("old", "complete", life + TICK),
            ("stuck", "started", life + TICK),
            ("running", "started", life - TICK),
        ):
            s.add(PreflightResult(plan_id=plan_id, org_id=org, status=status, created_at=NOW - age))
    result = run(metadeploy_maintenance.expire_preflight_results, db)
    with db.session() as s:
        rows = {p.org_id: (p.status, p.is_valid) for p in s.scalars(select(PreflightResult))}
    assert rows == {
        "fresh": ("complete", True),
        "at": ("complete", True),
        "old": ("complete", False),
        "stuck": ("canceled", False),
        "running": ("started", True),
    }
    assert result.records_processed == 2


def test_average_runtime_is_the_median_of_the_last_20_and_needs_5(db: Database) -> None:
    enough, few = plan(db), plan(db)
    with db.session() as s:
        for i in range(25):  # the 5 oldest (3600 s) fall outside the last 20
            took = 3600 if i < 5 else 60 + i
            s.add(
                Job(
                    plan_id=enough,
                    org_id=f"e{i}",
                    status="complete",
                    enqueued_at=NOW - dt.timedelta(days=30 - i, seconds=took),
                    success_at=NOW - dt.timedelta(days=30 - i),
                )
            )
        for i in range(4):
            s.add(
                Job(
                    plan_id=few,
                    org_id=f"f{i}",
                    status="complete",
                    enqueued_at=NOW - TICK * 9,
                    success_at=NOW,
                )
            )
    result = run(metadeploy_maintenance.calculate_average_plan_runtimes, db)
    with db.session() as s:
        averages = {p.id: p.average_duration_s for p in s.scalars(select(Plan))}
    assert averages[enough] == pytest.approx(74.5)  # median of 65..84
    assert averages[few] is None
    assert result.records_processed == 1


# --- Barycenter ------------------------------------------------------------------------------
def test_barycenter_cleanups_at_their_boundaries(db: Database) -> None:
    grace = dt.timedelta(seconds=db.settings.refresh_token_grace_s)
    five = dt.timedelta(seconds=db.settings.webauthn_challenge_lifetime_s)
    with db.session() as s:
        for n, expires in enumerate((NOW - TICK, NOW, NOW + TICK)):
            s.add(Session(session_key_hash=f"s{n}", expires_at=expires))
            s.add(
                DeviceCode(
                    device_code_hash=f"d{n}", user_code=f"U{n}", client_id="c", expires_at=expires
                )
            )
            s.add(RefreshToken(token_hash=f"r{n}", family_id="f", expires_at=expires))
            s.add(WebauthnChallenge(challenge=f"c{n}", created_at=NOW - five - TICK + TICK * n))
        # Rotated out of its chain: kept through the grace period, then deleted.
        s.add(
            RefreshToken(
                token_hash="rot-old",
                family_id="g",
                expires_at=NOW + grace * 10,
                rotated_at=NOW - grace - TICK,
            )
        )
        s.add(
            RefreshToken(
                token_hash="rot-new",
                family_id="g",
                expires_at=NOW + grace * 10,
                rotated_at=NOW - grace + TICK,
            )
        )
    assert run(barycenter.cleanup_expired_sessions, db).records_processed == 1
    assert run(barycenter.cleanup_expired_device_codes, db).records_processed == 1
    assert run(barycenter.cleanup_expired_refresh_tokens, db).records_processed == 2
    assert run(barycenter.cleanup_expired_challenges, db).records_processed == 1
    with db.session() as s:
        assert set(s.scalars(select(RefreshToken.token_hash))) == {"r1", "r2", "rot-new"}
    assert (
        count(db, Session) == 2 and count(db, DeviceCode) == 2 and count(db, WebauthnChallenge) == 2
    )


def test_barycenter_schedules_are_seconds_first() -> None:
    from tickwork.schedules import parse_schedule
    from workers.registry import get_job

    words = {
        name: parse_schedule(get_job(name).schedule or "").words()
        for name in (
            "cleanup_expired_sessions",
            "cleanup_expired_refresh_tokens",
            "cleanup_expired_challenges",
            "cleanup_expired_device_codes",
        )
    }
    assert words["cleanup_expired_refresh_tokens"].startswith("hourly at :30")
    assert words["cleanup_expired_device_codes"].startswith("hourly at :45")


# --- resources ------------------------------------------------------------------------------
def test_stuck_and_expired_resources(db: Database) -> None:
    stuck = dt.timedelta(hours=db.settings.stuck_provisioning_hours)
    with db.session() as s:
        for ext, state, changed, end in (
            ("stuck", "provisioning", NOW - stuck - TICK, None),
            ("at", "provisioning", NOW - stuck, None),
            ("ended", "ok", NOW, NOW - TICK),
            ("ending", "ok", NOW, NOW + TICK),
        ):
            s.add(
                RemoteResource(
                    source="x",
                    external_id=ext,
                    state=state,
                    state_changed_at=changed,
                    synced_at=NOW,
                    end_date=end,
                )
            )
    assert run(sync_jobs.mark_stuck_resources_erred, db).records_processed == 1
    assert run(sync_jobs.terminate_expired_resources, db).records_processed == 1
    with db.session() as s:
        states = {r.external_id: r.state for r in s.scalars(select(RemoteResource))}
    assert states == {"stuck": "erred", "at": "provisioning", "ended": "terminated", "ending": "ok"}


# --- batches and concurrency --------------------------------------------------------------------
def test_batches_are_bounded_and_counted_exactly(db: Database) -> None:
    with db.session() as s:
        s.add_all(Session(session_key_hash=f"k{i}", expires_at=NOW - TICK) for i in range(1050))
    table = Session.__table__
    stats = delete_in_batches(db, table, table.c.expires_at < NOW, batch_size=100)  # type: ignore[arg-type]
    assert stats.rows == 1050 and stats.batches == 11
    assert count(db, Session) == 0


def test_cleanup_racing_concurrent_inserts_finishes_without_deadlock(pg_db: Database) -> None:
    # Given 20,000 expired sessions and writers inserting and updating sessions meanwhile,
    with pg_db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO sessions (session_key_hash, expires_at, created_at) "
            "SELECT 'old' || g, %(expired)s, %(expired)s FROM generate_series(1, 20000) g",
            {"expired": NOW - dt.timedelta(days=1)},  # the job's clock is frozen at NOW
        )
    stop = threading.Event()
    errors: list[BaseException] = []
    written = [0]

    def writer(k: int) -> None:
        try:
            while not stop.is_set():
                with pg_db.session() as s:
                    s.add(
                        Session(
                            session_key_hash=f"new{k}-{written[0]}",
                            expires_at=NOW + dt.timedelta(days=1),
                        )
                    )
                    s.execute(
                        Session.__table__.update()  # type: ignore[attr-defined]
                        .where(Session.session_key_hash == f"old{(written[0] * 7) % 20000 + 1}")
                        .values(created_at=func.now())
                    )
                written[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        # when the batched cleanup runs alongside them,
        first = run(barycenter.cleanup_expired_sessions, pg_db, cleanup_batch_size=500)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    # then it finished, the writers were never blocked into an error, and a second run
    # picks up any rows that were locked by a writer at the time (SKIP LOCKED).
    assert not errors, errors
    assert written[0] > 0
    second = run(barycenter.cleanup_expired_sessions, pg_db, cleanup_batch_size=500)
    assert first.records_processed + second.records_processed == 20000
    assert count(pg_db, Session, Session.session_key_hash.like("old%")) == 0
