"""The client on the embedded system (SQLite + StubBroker + worker threads): each rule
gives its typed error and writes nothing; a valid request runs to the end."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from producers import client as c
from producers.client import InstallClient
from schema.base import utcnow
from schema.installs import Job, JobStepResult, PreflightResult
from schema.orgs import ScratchOrg
from tests.install_data import add_job, make_plan, make_user
from tests.support.systems import Embedded


@pytest.fixture
def client(embedded: Embedded) -> InstallClient:
    return InstallClient(embedded.db, embedded.broker, embedded.runtime.settings)


def _count(db: Any, model: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _plan(db: Any, checks: bool = False) -> Any:
    return make_plan(
        db,
        [
            ("Required", "task", "tests.install_data:ok_step", True),
            ("Optional", "command", "echo optional", False),
        ],
        [("Check", "tests.install_data:passing_check", "error")] if checks else [],
    )


def test_a_valid_request_is_enqueued_run_and_completed(
    embedded: Embedded, client: InstallClient
) -> None:
    plan = _plan(embedded.db)
    user = make_user(embedded.db)
    job_id = client.create_install_job(
        plan_id=plan.plan_id, org_id="00DA", user_id=user, steps=plan.step_ids
    )
    embedded.drain()
    with embedded.db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.status == "complete", job.exception
        assert job.enqueued_at is not None and job.message_id
        assert job.steps == plan.step_ids
    assert _count(embedded.db, JobStepResult) == 2


@pytest.mark.parametrize(
    ("case", "error", "rule"),
    [
        ("no plan", c.PlanNotFound, "plan_exists"),
        ("no user", c.UserNotFound, "user_exists"),
        ("no tokens", c.NoTokens, "user_has_tokens"),
        ("foreign step", c.UnknownSteps, "steps_belong_to_plan"),
        ("required missing", c.RequiredStepsMissing, "required_steps_selected"),
        ("no preflight", c.PreflightRequired, "valid_preflight"),
        ("expired preflight", c.PreflightRequired, "valid_preflight"),
        ("preflight with errors", c.PreflightRequired, "valid_preflight"),
        ("org busy", c.OrgBusy, "one_started_job_per_org"),
        ("bad org id", c.InvalidRequest, "valid_request"),
        ("no steps", c.InvalidRequest, "valid_request"),
    ],
)
def test_each_rule_refuses_with_its_typed_error_and_writes_nothing(
    embedded: Embedded, client: InstallClient, case: str, error: type[Exception], rule: str
) -> None:
    db = embedded.db
    checks = "preflight" in case
    plan = _plan(db, checks=checks)
    user = make_user(db, token=case != "no tokens")
    kwargs: dict[str, Any] = {
        "plan_id": plan.plan_id,
        "org_id": "00DA",
        "user_id": user,
        "steps": plan.step_ids,
    }
    if case == "no plan":
        kwargs["plan_id"] = 999
    if case == "no user":
        kwargs["user_id"] = 999
    if case == "foreign step":
        kwargs["steps"] = [*plan.step_ids, 999]
    if case == "required missing":
        kwargs["steps"] = plan.step_ids[1:]
    if case == "bad org id":
        kwargs["org_id"] = ""
    if case == "no steps":
        kwargs["steps"] = []
    if case in ("expired preflight", "preflight with errors"):
        with db.session() as s:
            s.add(
                PreflightResult(
                    org_id="00DA",
                    user_id=user,
                    plan_id=plan.plan_id,
                    status="complete",
                    results={"1": {"status": "error" if "errors" in case else "ok"}},
                    created_at=utcnow() - dt.timedelta(minutes=11 if "expired" in case else 1),
                )
            )
    if case == "org busy":
        with db.session() as s:
            s.add(
                Job(plan_id=plan.plan_id, org_id="00DA", user_id=user, steps=[], status="started")
            )
    before = _count(db, Job)
    with pytest.raises(error) as raised:
        client.create_install_job(**kwargs)
    assert raised.value.rule == rule  # type: ignore[attr-defined]
    assert str(raised.value)
    assert _count(db, Job) == before


def test_a_ready_preflight_lets_the_job_through_and_is_used_up(
    embedded: Embedded, client: InstallClient
) -> None:
    db = embedded.db
    plan = _plan(db, checks=True)
    user = make_user(db)
    preflight_id = client.request_preflight(plan_id=plan.plan_id, org_id="00DA", user_id=user)
    embedded.drain()
    job_id = client.create_install_job(
        plan_id=plan.plan_id, org_id="00DA", user_id=user, steps=plan.step_ids[:1]
    )
    embedded.drain()
    with db.session() as s:
        preflight = s.get(PreflightResult, preflight_id)
        job = s.get(Job, job_id)
        assert preflight is not None and job is not None
        assert preflight.status == "complete" and not preflight.is_valid  # used by the enqueuer
        assert job.status == "complete"


def test_cancel_before_start_cancels_at_once_and_finished_jobs_refuse(
    embedded: Embedded, client: InstallClient
) -> None:
    db = embedded.db
    plan = _plan(db)
    user = make_user(db)
    # Given a job not started yet, when it is canceled, then at once; and once finished,
    # a job refuses to be canceled again, as an unknown one is refused.
    job_id = add_job(db, plan, user, "00DB")
    assert client.cancel_job(job_id) == "canceled"
    with pytest.raises(c.JobAlreadyFinished):
        client.cancel_job(job_id)
    with pytest.raises(c.JobNotFound):
        client.cancel_job(12345)


def test_scratch_orgs_are_refused_when_the_long_queue_is_full(
    embedded: Embedded, client: InstallClient
) -> None:
    db = embedded.db
    plan = _plan(db)
    embedded.worker.stop()  # nothing consumes: messages pile up in the long queue
    long_queue = embedded.runtime.settings.queue("long")
    noop = embedded.broker.get_actor("delete_scratch_org")
    for _ in range(16):
        noop.send(v=1, scratch_org_uuid="0" * 36)
    assert c.queue_length(embedded.broker, long_queue) == 16
    with pytest.raises(c.QueueFull) as raised:
        client.request_scratch_org(plan_id=plan.plan_id, email="a@example.com")
    assert "16 > 15" in str(raised.value)
    assert _count(db, ScratchOrg) == 0


def test_bad_input_is_refused_naming_the_field(client: InstallClient) -> None:
    with pytest.raises(c.InvalidRequest, match="email"):
        client.request_scratch_org(plan_id=1, email="not-an-address")
    with pytest.raises(c.InvalidRequest, match="plan_id"):
        client.request_preflight(plan_id=0, org_id="00D", user_id=1)
    with pytest.raises(c.InvalidRequest, match="language"):
        client.update_translations("fr; DROP")
    with pytest.raises(c.ScratchOrgNotFound):
        client.delete_scratch_org("0" * 36)
