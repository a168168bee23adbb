"""MetaDeploy's per-step preflight rules: a check's result belongs to a step, and an
``optional``/``hide``/``skip`` result changes which steps an install may or must run."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from producers import client as c
from producers.client import InstallClient
from schema.catalog import PreflightCheck
from schema.installs import Job, PreflightResult
from schema.orgs import ScratchOrg
from tests.install_data import make_plan, make_user
from tests.support.systems import Embedded


@pytest.fixture
def client(embedded: Embedded) -> InstallClient:
    return InstallClient(embedded.db, embedded.broker, embedded.runtime.settings)


def _plan_with_step_checks(db: Any, action: str) -> Any:
    """Three required steps; a failing check about the second ends ``action``."""
    plan = make_plan(
        db,
        [
            ("First", "task", "tests.install_data:ok_step", True),
            ("Second", "task", "tests.install_data:ok_step", True),
            ("Third", "task", "tests.install_data:ok_step", True),
        ],
        [
            ("About second", "tests.install_data:failing_check", action),
            ("Plan-wide", "tests.install_data:passing_check", "error"),
        ],
        slug=f"plan-{action}",
    )
    with db.session() as s:
        s.execute(
            update(PreflightCheck)
            .where(PreflightCheck.id == plan.check_ids[0])
            .values(step_id=plan.step_ids[1])
        )
    return plan


def _preflight(embedded: Embedded, client: InstallClient, plan: Any, user: int, org: str) -> Any:
    preflight_id = client.request_preflight(plan_id=plan.plan_id, org_id=org, user_id=user)
    embedded.drain()
    with embedded.db.session() as s:
        preflight = s.get(PreflightResult, preflight_id)
        assert preflight is not None
        return preflight.results


@pytest.mark.parametrize("action", ["optional", "hide", "skip"])
def test_a_step_made_optional_by_its_preflight_may_be_left_out(
    embedded: Embedded, client: InstallClient, action: str
) -> None:
    db = embedded.db
    plan = _plan_with_step_checks(db, action)
    user = make_user(db, name=f"u{action}")
    org = f"00D{action.upper()}"
    # Given a preflight whose check about the second (required) step ended `action`,
    results = _preflight(embedded, client, plan, user, org)
    [about_second] = [r for r in results.values() if r["name"] == "About second"]
    assert about_second["status"] == action and about_second["step_id"] == plan.step_ids[1]
    # when the user installs without that step,
    first, _, third = plan.step_ids
    job_id = client.create_install_job(
        plan_id=plan.plan_id, org_id=org, user_id=user, steps=[first, third]
    )
    # then the job is accepted (without the preflight rule: RequiredStepsMissing).
    embedded.drain()
    with db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.steps == [first, third] and job.status == "complete"


@pytest.mark.parametrize("action", ["hide", "skip"])
def test_a_step_the_preflight_hides_or_skips_never_runs(
    embedded: Embedded, client: InstallClient, action: str
) -> None:
    db = embedded.db
    plan = _plan_with_step_checks(db, action)
    user = make_user(db, name=f"v{action}")
    org = f"00DV{action.upper()}"
    _preflight(embedded, client, plan, user, org)
    # Given the user selected every step, including the one the preflight skips,
    job_id = client.create_install_job(
        plan_id=plan.plan_id, org_id=org, user_id=user, steps=plan.step_ids
    )
    embedded.drain()
    # then the job leaves that step out and runs the rest.
    with db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "complete"
        assert job.steps == [plan.step_ids[0], plan.step_ids[2]]
        assert "Second" not in job.log


def test_optional_or_warn_results_do_not_free_other_required_steps(
    embedded: Embedded, client: InstallClient
) -> None:
    db = embedded.db
    plan = _plan_with_step_checks(db, "warn")
    user = make_user(db, name="w")
    results = _preflight(embedded, client, plan, user, "00DWARN")
    assert {r["status"] for r in results.values()} == {"warn", "ok"}
    # A warning about a step does not make it optional: leaving it out is refused.
    with pytest.raises(c.RequiredStepsMissing, match="Second"):
        client.create_install_job(
            plan_id=plan.plan_id,
            org_id="00DWARN",
            user_id=user,
            steps=[plan.step_ids[0], plan.step_ids[2]],
        )


def test_an_error_on_a_step_blocks_the_install(embedded: Embedded, client: InstallClient) -> None:
    db = embedded.db
    plan = _plan_with_step_checks(db, "error")
    user = make_user(db, name="e")
    results = _preflight(embedded, client, plan, user, "00DERR")
    assert [r["step_id"] for r in results.values() if r["status"] == "error"] == [plan.step_ids[1]]
    with pytest.raises(c.PreflightRequired, match="found errors"):
        client.create_install_job(
            plan_id=plan.plan_id, org_id="00DERR", user_id=user, steps=plan.step_ids
        )


def test_a_new_scratch_org_installs_without_the_steps_its_preflight_skips(
    embedded: Embedded, client: InstallClient
) -> None:
    db = embedded.db
    plan = _plan_with_step_checks(db, "skip")
    # Given a plan whose steps are all required and whose check skips the second,
    request = client.request_scratch_org(plan_id=plan.plan_id, email="grace@example.com")
    embedded.drain()
    embedded.drain()
    # then the scratch org's automatic install ran the other steps only.
    with db.session() as s:
        scratch = s.scalar(select(ScratchOrg).where(ScratchOrg.uuid == request))
        assert scratch is not None and scratch.status == "complete", scratch and scratch.exception
        job = s.scalar(select(Job).where(Job.org_id == scratch.org_id))
        assert job is not None and job.status == "complete"
        assert job.steps == [plan.step_ids[0], plan.step_ids[2]]
