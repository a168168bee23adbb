"""Enqueuer, preflight, scratch orgs and translations on the embedded system."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dramatiq.middleware import Shutdown, TimeLimitExceeded
from sqlalchemy import select

from producers.client import InstallClient
from schema.base import utcnow
from schema.catalog import Plan, Product, Step, Translation
from schema.installs import Job, PreflightResult
from schema.orgs import Org, ScratchOrg
from tests.install_data import add_job, make_plan, make_user
from tests.support.systems import Embedded
from tickwork.contracts import Preflight, UpdateAllTranslations
from tickwork.events import StatusEvent, local_events
from tickwork.publish import publish
from workers.installs.backends.local import LocalOrgBackend
from workers.installs.backends.protocol import OrgRef, ScratchOrgInfo, StepSpec
from workers.installs.enqueuer import enqueue_pending
from workers.installs.preflight import run_preflight
from workers.installs.scratch_orgs import INTERRUPTED, create_scratch_org
from workers.jobs.installs import enqueuer as enqueuer_job
from workers.registry import get_job


def test_the_enqueuer_sends_each_job_once_and_uses_up_its_preflight(embedded: Embedded) -> None:
    db = embedded.db
    embedded.worker.stop()
    plan = make_plan(db, [("One", "task", "tests.install_data:ok_step", True)])
    user = make_user(db)
    with db.session() as s:
        s.add(PreflightResult(org_id="00DA", user_id=user, plan_id=plan.plan_id, status="complete"))
        s.add(PreflightResult(org_id="00DB", user_id=user, plan_id=plan.plan_id, status="complete"))
        for org in ("00DA", "00DC"):
            s.add(Job(plan_id=plan.plan_id, org_id=org, user_id=user, steps=plan.step_ids))
        s.add(Job(plan_id=plan.plan_id, org_id="00DD", user_id=user, steps=[], status="canceled"))
    assert enqueue_pending(db, embedded.broker, embedded.runtime.settings, batch_size=1) == 2
    assert enqueue_pending(db, embedded.broker, embedded.runtime.settings) == 0
    long_queue = embedded.broker.queues[embedded.runtime.settings.queue("long")]
    assert long_queue.qsize() == 2
    with db.session() as s:
        jobs = {j.org_id: j for j in s.scalars(select(Job))}
        valid = {p.org_id: p.is_valid for p in s.scalars(select(PreflightResult))}
    assert jobs["00DA"].enqueued_at and jobs["00DC"].enqueued_at and jobs["00DA"].message_id
    assert jobs["00DD"].enqueued_at is None
    assert valid == {"00DA": False, "00DB": True}


def test_the_enqueuer_is_a_scheduled_job_every_minute() -> None:
    spec = get_job("enqueuer")
    assert spec.schedule == "* * * * *" and spec.fn is enqueuer_job and spec.queue == "short"


def test_a_preflight_that_finds_errors_is_still_complete(embedded: Embedded) -> None:
    db = embedded.db
    plan = make_plan(
        db,
        [("One", "task", "tests.install_data:ok_step", True)],
        [
            ("Person accounts", "tests.install_data:failing_check", "error"),
            ("Nice to have", "test -e /nonexistent/file", "warn"),
            ("Fine", "true", "error"),
        ],
    )
    user = make_user(db)
    client = InstallClient(db, embedded.broker, embedded.runtime.settings)
    preflight_id = client.request_preflight(plan_id=plan.plan_id, org_id="00DA", user_id=user)
    embedded.drain()
    with db.session() as s:
        preflight = s.get(PreflightResult, preflight_id)
        assert preflight is not None
    assert preflight.status == "complete" and preflight.is_valid
    by_name = {r["name"]: (r["status"], r["message"]) for r in preflight.results.values()}
    assert by_name == {
        "Person accounts": ("error", "the org has no Person Accounts"),
        "Nice to have": ("warn", "exited with status 1"),
        "Fine": ("ok", None),
    }


def _events(embedded: Embedded) -> list[StatusEvent]:
    events: list[StatusEvent] = []
    local_events(embedded.runtime.settings).listeners.append(events.append)
    return events


def test_a_scratch_org_is_created_preflighted_and_installed_when_all_steps_are_required(
    embedded: Embedded,
) -> None:
    db = embedded.db
    events = _events(embedded)
    plan = make_plan(db, [("One", "task", "tests.install_data:ok_step", True)])
    client = InstallClient(db, embedded.broker, embedded.runtime.settings)
    request = client.request_scratch_org(plan_id=plan.plan_id, email="grace@example.com")
    embedded.drain()
    embedded.drain()
    with db.session() as s:
        scratch = s.scalar(select(ScratchOrg).where(ScratchOrg.uuid == request))
        assert scratch is not None
        assert scratch.status == "complete", scratch.exception
        assert scratch.email is None and scratch.org_id and scratch.expires_at
        org = s.scalar(select(Org).where(Org.org_id == scratch.org_id))
        assert org is not None and org.is_scratch
        job = s.scalar(select(Job).where(Job.org_id == scratch.org_id))
        assert job is not None and job.status == "complete"
    kinds = [(e.kind, e.status) for e in events]
    assert ("org", "completed") in kinds and ("preflight", "completed") in kinds
    assert ("job", "completed") in kinds


def test_a_failed_scratch_org_is_marked_failed_and_deleted(embedded: Embedded) -> None:
    db = embedded.db
    plan = make_plan(db, [("One", "task", "tests.install_data:ok_step", False)])
    client = InstallClient(db, embedded.broker, embedded.runtime.settings)
    request = client.request_scratch_org(
        plan_id=plan.plan_id,
        email="grace@example.com",
        config={"create_command": "echo 'quota exceeded password=s3cret' >&2; exit 4"},
    )
    embedded.drain()
    embedded.drain()
    with db.session() as s:
        scratch = s.scalar(select(ScratchOrg).where(ScratchOrg.uuid == request))
        assert scratch is not None
    assert scratch.status == "failed" and scratch.email is None
    assert scratch.exception is not None and "exited with status 4" in scratch.exception
    assert "s3cret" not in scratch.exception


def test_update_all_translations_for_one_language_and_for_all(embedded: Embedded) -> None:
    db = embedded.db
    plan = make_plan(db, [("Install", "task", "tests.install_data:ok_step", True)])
    with db.session() as s:
        product_id = s.scalar(select(Product.id))
        rows = [
            ("fr", "plan", plan.plan_id, "title", "Plan FR"),
            ("fr", "step", plan.step_ids[0], "name", "Installer"),
            ("de", "product", product_id, "description", "Ein Produkt"),
            ("de", "plan", plan.plan_id, "slug", "ignored"),
        ]
        s.add_all(
            Translation(language=lang, model=m, object_id=i, field=f, text=t)
            for lang, m, i, f, t in rows
        )
        s.get(Plan, plan.plan_id).translations = {"es": {"title": "stale"}}  # type: ignore[union-attr]
    publish(embedded.broker, embedded.runtime.settings, UpdateAllTranslations(language="fr"))
    embedded.drain()
    with db.session() as s:
        plan_row: Any = s.get(Plan, plan.plan_id)
        step_row: Any = s.get(Step, plan.step_ids[0])
        assert plan_row.translations == {"es": {"title": "stale"}, "fr": {"title": "Plan FR"}}
        assert step_row.translations == {"fr": {"name": "Installer"}}
        assert s.get(Product, product_id).translations == {}  # type: ignore[union-attr]
    publish(embedded.broker, embedded.runtime.settings, UpdateAllTranslations())
    embedded.drain()
    with db.session() as s:
        assert s.get(Plan, plan.plan_id).translations == {"fr": {"title": "Plan FR"}}  # type: ignore[union-attr]
        assert s.get(Product, product_id).translations == {"de": {"description": "Ein Produkt"}}  # type: ignore[union-attr]


def test_expired_preflights_are_not_ready() -> None:
    from schema.installs import preflight_is_ready
    from tickwork.settings import load_settings

    settings = load_settings({})
    now = utcnow()
    fresh = PreflightResult(status="complete", is_valid=True, results={}, created_at=now)
    old = PreflightResult(
        status="complete", is_valid=True, results={}, created_at=now - dt.timedelta(minutes=10)
    )
    lifetime = settings.preflight_lifetime_minutes
    assert preflight_is_ready(fresh, lifetime, now) and not preflight_is_ready(old, lifetime, now)


def test_the_minute_sweep_enqueues_a_job_whose_immediate_enqueue_was_lost(
    embedded: Embedded,
) -> None:
    from schema.scheduling import JobRun
    from workers.scheduler import control

    db = embedded.db
    plan = make_plan(db, [("One", "task", "tests.install_data:ok_step", True)])
    user = make_user(db)
    # Given a job committed by a service that crashed before sending its enqueue message,
    job_id = add_job(db, plan, user, "00DLOST")
    # when the scheduled enqueuer runs,
    run_id = control.trigger(db, embedded.broker, "enqueuer")
    embedded.drain()
    embedded.drain()
    # then the job is enqueued and installed, and the run says how many it enqueued;
    with db.session() as s:
        run = s.get(JobRun, run_id)
        job = s.get(Job, job_id)
        assert run is not None and job is not None
        assert run.status == "succeeded" and run.records_processed == 1
        assert job.status == "complete"
    # with nothing waiting, the next run is skipped with the reason.
    again = control.trigger(db, embedded.broker, "enqueuer")
    embedded.drain()
    with db.session() as s:
        run = s.get(JobRun, again)
        assert run is not None and run.status == "skipped"
        assert run.skip_reason == "no install job is waiting to be enqueued"


class _Interrupting(LocalOrgBackend):
    """A backend whose every call is interrupted by the worker (time limit or shutdown)."""

    def __init__(self, settings: Any, db: Any, exc: BaseException) -> None:
        super().__init__(settings, db)
        self.exc = exc

    def run_check(self, org: OrgRef, check: StepSpec, timeout_s: float) -> str | None:
        raise self.exc

    def create_scratch_org(self, config: dict[str, Any], timeout_s: float) -> ScratchOrgInfo:
        raise self.exc


def test_a_preflight_past_its_time_limit_ends_failed_not_stuck(embedded: Embedded) -> None:
    db, settings = embedded.db, embedded.runtime.settings
    plan = make_plan(
        db, [("One", "task", "tests.install_data:ok_step", True)], [("C", "true", "error")]
    )
    with db.session() as s:
        preflight = PreflightResult(org_id="00DA", user_id=None, plan_id=plan.plan_id)
        s.add(preflight)
        s.flush()
        preflight_id = preflight.id
    backend = _Interrupting(settings, db, TimeLimitExceeded())
    assert run_preflight(db, settings, backend, Preflight(preflight_id=preflight_id)) == "failed"
    with db.session() as s:
        row = s.get(PreflightResult, preflight_id)
        assert row is not None and not row.is_valid
        assert row.exception == "The preflight exceeded its time limit of 60 s."


def test_a_scratch_org_interrupted_by_shutdown_or_a_dead_worker_ends_failed(
    embedded: Embedded,
) -> None:
    db, settings, broker = embedded.db, embedded.runtime.settings, embedded.broker
    plan = make_plan(db, [("One", "task", "tests.install_data:ok_step", True)])
    with db.session() as s:
        s.add(ScratchOrg(uuid="a" * 36, plan_id=plan.plan_id, email="x@example.com"))
        s.add(ScratchOrg(uuid="b" * 36, plan_id=plan.plan_id, org_id="00DDEAD", email=None))
        s.add(Org(org_id="00DDEAD", org_type="scratch", is_scratch=True))
    # Given one request whose worker is shutting down, and one whose worker died after
    # creating the org (the message comes back with the org already recorded),
    shutdown = _Interrupting(settings, db, Shutdown())
    assert create_scratch_org(db, settings, broker, shutdown, "a" * 36) == "failed"
    ok = LocalOrgBackend(settings, db)
    assert create_scratch_org(db, settings, broker, ok, "b" * 36) == "failed"
    embedded.drain()
    # then both end failed with the reason, and the orphaned org is deleted.
    with db.session() as s:
        rows = {r.uuid[0]: r for r in s.scalars(select(ScratchOrg))}
        assert s.scalar(select(Org).where(Org.org_id == "00DDEAD")) is None
    assert rows["a"].status == rows["b"].status == "failed"
    assert rows["a"].exception == rows["b"].exception == INTERRUPTED
    assert rows["a"].email is None
