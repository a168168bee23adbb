"""Catalog, users and steps for the install tests of every layer.

Step callables used by plans live here too (``tests.install_data:ok_step`` ...): the
local org backend imports them by path, in the test process or in a real worker.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schema.catalog import Plan, PreflightCheck, Product, Step, Version
from schema.engine import Database
from schema.identity import OAuthToken, User
from schema.installs import Job
from workers.installs.backends.protocol import OrgRef, StepOutcome

ACCESS_TOKEN = "00Dxx0000001gPL!AQ4AQFakeSecretAccessTokenValue12345"


@dataclass
class PlanData:
    plan_id: int
    step_ids: list[int]
    check_ids: list[int] = field(default_factory=list)


def make_plan(
    db: Database,
    steps: list[tuple[str, str, str, bool]],
    checks: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    slug: str = "install",
) -> PlanData:
    """steps: (name, kind, path, is_required); checks: (name, path, action_on_fail)."""
    with db.session() as s:
        product = Product(slug=f"product-{slug}", title="Product", description="A product")
        version = Version(product=product, label="1.0")
        plan = Plan(version=version, slug=slug, title="Plan", description="Installs it")
        s.add_all([product, version, plan])
        s.flush()
        rows = [
            Step(plan_id=plan.id, order=i, name=n, kind=k, path=p, is_required=r)
            for i, (n, k, p, r) in enumerate(steps, 1)
        ]
        check_rows = [
            PreflightCheck(plan_id=plan.id, order=i, name=n, path=p, action_on_fail=a)
            for i, (n, p, a) in enumerate(checks, 1)
        ]
        s.add_all(rows + check_rows)
        s.flush()
        return PlanData(plan.id, [r.id for r in rows], [c.id for c in check_rows])


def make_user(db: Database, name: str = "ada", token: bool = True) -> int:
    with db.session() as s:
        user = User(username=name, email=f"{name}@example.com")
        s.add(user)
        s.flush()
        if token:
            s.add(
                OAuthToken(
                    user_id=user.id,
                    instance_url="https://example.my.salesforce.com",
                    access_token=ACCESS_TOKEN,
                    refresh_token="refresh-secret-value",
                )
            )
        return user.id


def add_job(
    db: Database,
    plan: PlanData,
    user_id: int,
    org_id: str = "00DORG",
    steps: list[int] | None = None,
    **values: Any,
) -> int:
    """An install job written straight to the database (no message sent), of the plan's
    steps unless ``steps`` says otherwise; its id."""
    with db.session() as s:
        job = Job(
            plan_id=plan.plan_id,
            org_id=org_id,
            user_id=user_id,
            steps=plan.step_ids if steps is None else steps,
            **values,
        )
        s.add(job)
        s.flush()
        return int(job.id)


def get_job(db: Database, job_id: int) -> Job:
    with db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None, f"no job {job_id}"
        return job


# --- installs created as a service creates them ---------------------------------------
def create_install(
    client: Any, db: Database, steps: list[tuple[str, str, str, bool]], org_id: str
) -> int:
    """An install job of a new plan of ``steps`` for a new user (both named after the org,
    so one test can create several), created and enqueued through the install ``client``."""
    plan = make_plan(db, steps, slug=org_id.lower())
    user = make_user(db, name=org_id.lower())
    job_id: int = client.create_install_job(
        plan_id=plan.plan_id, org_id=org_id, user_id=user, steps=plan.step_ids
    )
    return job_id


def add_long_install(client: Any, db: Database, org_id: str) -> int:
    """An install whose first step writes its pid to ``$INSTALL_MARKER`` (the worker's
    environment), then sleeps for a minute; its second step must never run after an
    interruption (it would write "second" there)."""
    return create_install(
        client,
        db,
        [
            (
                "Long step",
                "command",
                'echo step-started; echo $$ >> "$INSTALL_MARKER"; exec sleep 60',
                True,
            ),
            ("Never", "command", 'echo second >> "$INSTALL_MARKER"', True),
        ],
        org_id,
    )


def marker_pids(marker: Path) -> list[int]:
    """The pids the long step of :func:`add_long_install` wrote to ``marker``."""
    return [int(x) for x in marker.read_text().split()] if marker.exists() else []


# --- step callables (imported by path by LocalOrgBackend) -----------------------------
def ok_step(org: OrgRef) -> None:
    return None


def warn_step(org: OrgRef) -> StepOutcome:
    return StepOutcome("warn", "layout already customised", "kept the existing layout")


def leaky_failing_step(org: OrgRef) -> None:
    raise RuntimeError(f"login failed with token {org.access_token} password=hunter2")


def marker_step(org: OrgRef) -> None:
    """Appends a line to $INSTALL_MARKER: counts how often a step really ran."""
    with open(os.environ["INSTALL_MARKER"], "a") as f:
        f.write(f"{org.org_id}\n")


def slow_step(org: OrgRef) -> None:
    time.sleep(float(os.environ.get("INSTALL_SLOW_S", "1.5")))


def failing_check(org: OrgRef) -> str:
    return "the org has no Person Accounts"


def passing_check(org: OrgRef) -> Any:
    return None
