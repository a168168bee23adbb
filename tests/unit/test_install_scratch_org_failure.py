"""MetaDeploy's fail_job: an install or a preflight failing on a scratch org fails the
org's request and deletes the org (on the embedded system: SQLite, StubBroker, workers)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from producers.client import InstallClient
from schema.orgs import Org, ScratchOrg
from tests.install_data import make_plan, make_user
from tests.support.systems import Embedded


@pytest.fixture
def client(embedded: Embedded) -> InstallClient:
    return InstallClient(embedded.db, embedded.broker, embedded.runtime.settings)


def _scratch_org(db: Any, plan_id: int, org_id: str) -> str:
    """A scratch org create_scratch_org finished making: its request complete, its org live."""
    request_uuid = str(uuid.uuid4())
    with db.session() as s:
        s.add(Org(org_id=org_id, org_type="scratch", is_scratch=True))
        s.add(ScratchOrg(uuid=request_uuid, plan_id=plan_id, org_id=org_id, status="complete"))
    return request_uuid


def _state(db: Any, request_uuid: str, org_id: str) -> tuple[str, str | None, bool]:
    with db.session() as s:
        request = s.scalar(select(ScratchOrg).where(ScratchOrg.uuid == request_uuid))
        assert request is not None
        live = s.scalar(select(Org.id).where(Org.org_id == org_id)) is not None
        return request.status, request.exception, live


def test_a_failed_install_on_a_scratch_org_fails_and_deletes_the_org(
    embedded: Embedded, client: InstallClient
) -> None:
    db = embedded.db
    plan = make_plan(db, [("Boom", "task", "tests.install_data:leaky_failing_step", True)])
    user = make_user(db)
    request_uuid = _scratch_org(db, plan.plan_id, "00DSCRATCHFAIL")
    # Given an install on a scratch org whose step fails,
    job_id = client.create_install_job(
        plan_id=plan.plan_id, org_id="00DSCRATCHFAIL", user_id=user, steps=plan.step_ids
    )
    # when the workers run it (and whatever it queues),
    embedded.drain()
    # then the org's request is failed with the job's reason and the org was deleted.
    status, exception, live = _state(db, request_uuid, "00DSCRATCHFAIL")
    assert status == "failed" and not live
    assert exception is not None and f"installation job {job_id} failed" in exception


def test_a_failed_preflight_on_a_scratch_org_fails_and_deletes_the_org(
    embedded: Embedded, client: InstallClient
) -> None:
    db = embedded.db
    plan = make_plan(
        db,
        [("Step", "task", "tests.install_data:ok_step", True)],
        [("Crashes", "tests.install_data:leaky_failing_step", "error")],
    )
    user = make_user(db)
    request_uuid = _scratch_org(db, plan.plan_id, "00DSCRATCHPRE")
    preflight_id = client.request_preflight(
        plan_id=plan.plan_id, org_id="00DSCRATCHPRE", user_id=user
    )
    embedded.drain()
    status, exception, live = _state(db, request_uuid, "00DSCRATCHPRE")
    assert status == "failed" and not live
    assert exception is not None and f"preflight {preflight_id} failed" in exception


def test_a_failed_install_on_a_persistent_org_leaves_it(
    embedded: Embedded, client: InstallClient
) -> None:
    db = embedded.db
    plan = make_plan(db, [("Boom", "task", "tests.install_data:leaky_failing_step", True)])
    with db.session() as s:
        s.add(Org(org_id="00DPROD", org_type="production"))
    client.create_install_job(
        plan_id=plan.plan_id, org_id="00DPROD", user_id=make_user(db), steps=plan.step_ids
    )
    embedded.drain()
    with db.session() as s:
        assert s.scalar(select(Org.id).where(Org.org_id == "00DPROD")) is not None
        assert s.scalar(select(ScratchOrg.id)) is None
