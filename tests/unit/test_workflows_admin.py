"""Workflows of issue 19 through the admin API and the CLI (given / when / then): run now
with arguments and an idempotency key, backfill, a run with its chain, and the jobs
listing showing chains, entries and policies.

API tests run on SQLite + StubBroker and on PostgreSQL + RabbitMQ; CLI tests on the
embedded mode, as a second terminal beside a `tickwork run` (its heartbeat fresh).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from admin.api import create_app
from admin.api.auth import create_token
from admin.cli import common
from admin.cli.main import app as cli
from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun
from tests.support.systems import System
from tests.support.waiting import wait_for
from tests.unit.test_workflows import FLOW_JOBS, _declare, finished, runs
from tickwork.schedules import floor_minute
from workers.heartbeat import beat, heartbeat_path
from workers.registry import unregister

API = tuple[TestClient, dict[str, str], System]


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.integration)])
def api(request: pytest.FixtureRequest, tj: Any) -> Iterator[API]:
    """The admin API on the system under test, the workflow jobs declared first."""
    _declare()
    try:
        system: System = request.getfixturevalue(request.param)
        app = create_app(system.runtime.settings, system.db, system.broker)
        token = create_token(system.db, "tests").token
        with TestClient(app) as http:
            yield http, {"Authorization": f"Bearer {token}"}, system
    finally:
        for name in FLOW_JOBS:
            unregister(name)


def test_api_runs_now_with_arguments_checked_first(api: API) -> None:
    http, auth, system = api
    # Given a job with typed parameters, when run now with arguments and a key, twice,
    body = {"args": {"source": "S", "full": True}, "idempotency_key": "k1"}
    first = http.post("/api/jobs/w_sync/trigger", json=body, headers=auth)
    again = http.post("/api/jobs/w_sync/trigger", json=body, headers=auth)
    # then one run is queued, with those arguments;
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    wait_for(lambda: finished(system.db, "w_sync", 1), 30, "run finished")
    (run,) = runs(system.db, "w_sync")
    assert run.kwargs == {"source": "S", "full": True}
    # the Idempotency-Key header does the same,
    headers = {**auth, "Idempotency-Key": "h1"}
    one = http.post("/api/jobs/w_second/trigger", headers=headers)
    two = http.post("/api/jobs/w_second/trigger", headers=headers)
    assert one.status_code == 202 and one.json() == two.json()
    # and a bad argument is refused naming the field, queueing nothing.
    bad = http.post(
        "/api/jobs/w_sync/trigger", json={"args": {"source": 5}}, headers=auth, params={"force": 1}
    )
    assert bad.status_code == 422 and "'source'" in bad.json()["detail"]
    assert len(runs(system.db, "w_sync")) == 1


def test_api_shows_a_run_with_its_chain_and_the_job_with_its_workflow(api: API) -> None:
    http, auth, system = api
    # Given a chained job that ran,
    run_id = http.post("/api/jobs/w_first/trigger", headers=auth).json()["run_id"]
    wait_for(lambda: finished(system.db, "w_third", 1), 30, "chain ran")
    # when its run is asked for, then its children are listed; a child names its parent.
    shown = http.get(f"/api/runs/{run_id}", headers=auth).json()
    assert {c["job_name"] for c in shown["children"]} == {"w_second", "w_third"}
    child = http.get(f"/api/runs/{shown['children'][0]['id']}", headers=auth).json()
    assert child["parent"]["id"] == run_id and child["triggered_by"] == run_id
    assert child["trigger"] == "chain"
    assert http.get("/api/runs/999999", headers=auth).status_code == 404
    # The job shows its chain, entries and policies.
    first = http.get("/api/jobs/w_first", headers=auth).json()
    assert first["then"] == ["w_second", "w_third"]
    sync = http.get("/api/jobs/w_sync", headers=auth).json()
    assert [e["name"] for e in sync["entries"]] == ["a", "b"]
    assert sync["entries"][1]["args"] == {"source": "B", "full": True}
    assert http.get("/api/jobs/w_flaky", headers=auth).json()["pause_after_failures"] == 2


def test_api_backfill_is_bounded_and_never_duplicates(api: API) -> None:
    http, auth, system = api
    now = floor_minute(utcnow())
    body = {
        "start": (now - dt.timedelta(minutes=4)).isoformat(),
        "end": now.isoformat(),
        "entry": "a",
    }
    # Given a range of 4 slots, when more than the bound is asked, nothing is queued;
    too_many = http.post("/api/jobs/w_sync/backfill", json={**body, "max": 3}, headers=auth)
    assert too_many.status_code == 422 and "more than 3" in too_many.json()["detail"]
    assert runs(system.db, "w_sync") == []
    # when backfilled twice, then 4 runs, once each.
    done = http.post("/api/jobs/w_sync/backfill", json=body, headers=auth)
    again = http.post("/api/jobs/w_sync/backfill", json=body, headers=auth)
    assert done.status_code == 202 and len(done.json()["run_ids"]) == 4
    assert again.json()["run_ids"] == []
    wait_for(lambda: finished(system.db, "w_sync", 4), 30, "backfill ran")
    naive = {**body, "start": "2026-11-30T00:00:00"}
    assert http.post("/api/jobs/w_sync/backfill", json=naive, headers=auth).status_code == 422


# --- CLI ------------------------------------------------------------------------------
@pytest.fixture
def terminal(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tj: Any
) -> Iterator[tuple[CliRunner, dict[str, str], Database]]:
    """The CLI on an embedded data dir whose `tickwork run` is alive (fresh heartbeat)."""
    _declare()
    monkeypatch.setattr(common, "_overrides", {})
    beat(heartbeat_path(sqlite_db.settings, "run"))
    env = {"TICKWORK_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    try:
        yield CliRunner(), env, sqlite_db
    finally:
        for name in FLOW_JOBS:
            unregister(name)


def test_cli_trigger_with_args_and_a_key(
    terminal: tuple[CliRunner, dict[str, str], Database],
) -> None:
    runner, env, db = terminal
    # Given arguments on the command line, when run now twice with one key,
    args = ["jobs", "trigger", "w_sync", "--arg", "source=A", "--arg", "full=true"]
    first = runner.invoke(cli, [*args, "--idempotency-key", "x"], env=env)
    again = runner.invoke(cli, [*args, "--idempotency-key", "x"], env=env)
    # then one run is recorded with the arguments as JSON values where they are JSON,
    assert first.exit_code == 0, first.output
    assert first.output.split()[2] == again.output.split()[2]
    (run,) = runs(db, "w_sync")
    assert run.kwargs == {"source": "A", "full": True}
    # and a bad argument is a usage error naming it; nothing more is recorded.
    for bad, named in (
        (["--arg", "source=1"], "'source'"),
        (["--arg", "nokey"], "key=value"),
        (["--arg", "source=A", "--arg", "colour=red"], "colour"),
    ):
        result = runner.invoke(cli, ["jobs", "trigger", "w_sync", "--force", *bad], env=env)
        assert result.exit_code == 2 and named in result.output, result.output
    assert len(runs(db, "w_sync")) == 1


def test_cli_backfill_and_run_chain(terminal: tuple[CliRunner, dict[str, str], Database]) -> None:
    runner, env, db = terminal
    now = floor_minute(utcnow())
    start = (now - dt.timedelta(minutes=3)).isoformat()
    base = ["jobs", "backfill", "w_sync", "--from", start, "--to", now.isoformat()]
    # Given 3 slots of entry a, when the bound is 2, then it is refused and nothing queued;
    refused = runner.invoke(cli, [*base, "--entry", "a", "--max", "2"], env=env)
    assert refused.exit_code == 2 and "--max" in refused.output
    # when backfilled twice, then 3 runs once each;
    assert "queued 3" in runner.invoke(cli, [*base, "--entry", "a"], env=env).output
    assert "already has a run" in runner.invoke(cli, [*base, "--entry", "a"], env=env).output
    with db.session() as s:
        triggers = list(s.scalars(select(JobRun.trigger).where(JobRun.job_name == "w_sync")))
    assert triggers == ["backfill"] * 3
    # a time without a zone is refused.
    naive = runner.invoke(
        cli,
        ["jobs", "backfill", "w_sync", "--from", "2026-11-30T00:00", "--to", now.isoformat()],
        env=env,
    )
    assert naive.exit_code == 2 and "time zone" in naive.output
    # `jobs run ID` shows a run with its chain.
    parent = runs(db, "w_sync")[0].id
    with db.session() as s:
        s.add(JobRun(job_name="w_second", trigger="chain", status="queued", triggered_by=parent))
    shown = runner.invoke(cli, ["jobs", "run", str(parent), "--format", "json"], env=env)
    assert shown.exit_code == 0, shown.output
    roles = {(r["job_name"], r["role"]) for r in json.loads(shown.stdout)}
    assert roles == {("w_sync", "this run"), ("w_second", "queued by it")}
    listing = runner.invoke(cli, ["jobs"], env=env).output
    assert "then → w_second, w_third" in listing and "entry b:" in listing
