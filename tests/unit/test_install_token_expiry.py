"""OAuth tokens expire after login inactivity, later while the user has running work, and
each affected user gets a user.token_expired event (MetaDeploy's user_token_expired)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from schema.catalog import Plan, Product, Version
from schema.engine import Database
from schema.identity import OAuthToken, User
from schema.installs import Job, PreflightResult
from tickwork.events import StatusEvent, local_events
from workers.installs.token_expiry import expire_oauth_tokens

NOW = dt.datetime(2026, 11, 30, 9, 0, 0, tzinfo=dt.UTC)
TICK = dt.timedelta(seconds=1)


@pytest.fixture
def env(sqlite_db: Database) -> Iterator[tuple[Any, Database, list[StatusEvent]]]:
    settings = sqlite_db.settings.model_copy(
        update={"token_lifetime_minutes": 10, "token_lifetime_running_minutes": 60}
    )
    events: list[StatusEvent] = []
    listeners = local_events(settings).listeners
    listeners.append(events.append)
    yield settings, sqlite_db, events
    listeners.remove(events.append)


def _user(db: Database, name: str, last_login: dt.datetime | None, token_age: dt.timedelta) -> int:
    with db.session() as s:
        user = User(username=name, last_login=last_login)
        s.add(user)
        s.flush()
        s.add(OAuthToken(user_id=user.id, access_token="secret", created_at=NOW - token_age))
        return int(user.id)


def _tokens(db: Database, user_id: int) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).where(OAuthToken.user_id == user_id)) or 0)


def _plan(db: Database) -> int:
    with db.session() as s:
        product = Product(slug="p", title="P", description="")
        plan = Plan(version=Version(product=product, label="1"), slug="plan", title="P")
        s.add_all([product, plan])
        s.flush()
        return int(plan.id)


def test_tokens_expire_after_login_inactivity(env: Any) -> None:
    settings, db, events = env
    minutes = dt.timedelta(minutes=1)
    # An old token of a user who logged in 9 minutes ago is still in use;
    recent = _user(db, "recent", NOW - 9 * minutes, token_age=60 * minutes)
    # one idle past the lifetime since the last login (and token) expires;
    idle = _user(db, "idle", NOW - 10 * minutes - TICK, token_age=30 * minutes)
    # a user who never logged in since the token was made: the token's age counts.
    fresh = _user(db, "fresh", None, token_age=10 * minutes)
    deleted = expire_oauth_tokens(db, settings, NOW)
    assert deleted == 1
    assert (_tokens(db, recent), _tokens(db, idle), _tokens(db, fresh)) == (1, 0, 1)
    assert [(e.kind, e.id, e.status, e.detail) for e in events] == [
        ("user", str(idle), "token_expired", {"tokens": 1})
    ]


def test_running_work_keeps_tokens_for_the_longer_window_only(env: Any) -> None:
    settings, db, events = env
    plan_id = _plan(db)
    minutes = dt.timedelta(minutes=1)
    # Users idle 30 minutes (past 10) with a running job / started preflight: kept;
    job_user = _user(db, "job", NOW - 30 * minutes, token_age=30 * minutes)
    pre_user = _user(db, "pre", NOW - 30 * minutes, token_age=30 * minutes)
    # a user idle past the running window (60) loses the token even mid-job.
    stale = _user(db, "stale", NOW - 60 * minutes - TICK, token_age=90 * minutes)
    with db.session() as s:
        s.add(Job(plan_id=plan_id, org_id="o1", user_id=job_user, status="started"))
        s.add(Job(plan_id=plan_id, org_id="o2", user_id=stale, status="started"))
        s.add(PreflightResult(plan_id=plan_id, org_id="o3", user_id=pre_user))
    assert expire_oauth_tokens(db, settings, NOW) == 1
    assert (_tokens(db, job_user), _tokens(db, pre_user), _tokens(db, stale)) == (1, 1, 0)
    assert [(e.id, e.status) for e in events] == [(str(stale), "token_expired")]
    # Once the job has ended, the short window applies again.
    with db.session() as s:
        s.execute(Job.__table__.update().values(status="complete"))  # type: ignore[attr-defined]
    assert expire_oauth_tokens(db, settings, NOW, batch_size=1) == 1
    assert _tokens(db, job_user) == 0 and _tokens(db, pre_user) == 1
