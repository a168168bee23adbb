"""Cancel, retry and the failures feed through the admin API, on each ``system``
(SQLite + the in-process broker; PostgreSQL + RabbitMQ, marked ``integration``), and
their audit rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from schema.audit import AuditEntry
from tests.support.waiting import wait_for
from tickwork.errors import RunCancelled
from workers.context import RunContext
from workers.registry import job
from workers.scheduler import control

STARTED = threading.Event()
FINISH_ANYWAY = threading.Event()


@pytest.fixture
def deaf() -> Iterator[None]:
    """``t_deaf``, declared before the system starts: it never checks for a cancel and
    ends normally once told to. (``t_steps``, which checks, is one of the ``tj`` jobs.)"""

    def t_deaf(ctx: RunContext) -> int:
        STARTED.set()
        FINISH_ANYWAY.wait(20)
        return 1

    STARTED.clear()
    FINISH_ANYWAY.clear()
    job(description="test: ignores cancels", time_limit_s=60)(t_deaf)
    yield
    FINISH_ANYWAY.set()


def _run(http: Any, headers: dict[str, str], run_id: int) -> dict[str, Any]:
    answer = http.get(f"/api/runs/{run_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _finished(http: Any, headers: dict[str, str], run_id: int) -> dict[str, Any]:
    wait_for(
        lambda: _run(http, headers, run_id)["finished_at"] is not None,
        20,
        f"run {run_id} finished",
    )
    return _run(http, headers, run_id)


def _audit(system: Any, action: str) -> list[AuditEntry]:
    with system.db.session() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_cancel_a_running_run_stops_it_between_steps(client: Any) -> None:
    # Given a job running step by step,
    http, headers, system = client
    run_id = http.post("/api/jobs/t_steps/trigger", headers=headers).json()["run_id"]
    wait_for(lambda: _run(http, headers, run_id)["status"] == "running", 20, "t_steps running")
    # when it is canceled, then the cancel is requested (it is running),
    answer = http.post(f"/api/runs/{run_id}/cancel", headers=headers)
    assert answer.status_code == 200 and answer.json() == {"run_id": run_id, "status": "running"}
    # and it stops at its next check, recorded canceled with where it stopped,
    run = _finished(http, headers, run_id)
    assert run["status"] == "canceled" and run["cancel_requested_at"] is not None
    assert "was canceled" in run["output"] and 0 < run["records_processed"] < 200
    # not retried, and canceling it again is refused, naming its state.
    again = http.post(f"/api/runs/{run_id}/cancel", headers=headers)
    assert again.status_code == 409 and "is canceled" in again.json()["detail"]
    (row,) = _audit(system, "cancel")
    assert row.actor == "tests" and row.target == f"run:{run_id}"
    assert row.before == {"status": "running", "cancel_requested_at": None}


def test_a_run_that_ignores_the_cancel_is_still_recorded_canceled(deaf: None, client: Any) -> None:
    # Given a running job that never checks for a cancel, canceled,
    http, headers, _system = client
    run_id = http.post("/api/jobs/t_deaf/trigger", headers=headers).json()["run_id"]
    assert STARTED.wait(20)
    assert http.post(f"/api/runs/{run_id}/cancel", headers=headers).status_code == 200
    # when it ends normally, then it is recorded canceled, not succeeded.
    FINISH_ANYWAY.set()
    assert _finished(http, headers, run_id)["status"] == "canceled"


def test_cancel_a_queued_run_at_once(client: Any) -> None:
    # Given a run recorded but not yet sent (nothing will start it),
    http, headers, system = client
    run_id = control.trigger(system.db, None, "t_count")
    # when it is canceled, then at once: canceled, finished, with who did it.
    answer = http.post(f"/api/runs/{run_id}/cancel", headers=headers)
    assert answer.json() == {"run_id": run_id, "status": "canceled"}
    run = _run(http, headers, run_id)
    assert run["status"] == "canceled" and run["finished_at"] is not None
    assert "by tests" in run["error"]
    # An unknown run is 404.
    assert http.post("/api/runs/999999/cancel", headers=headers).status_code == 404


def test_retry_a_failed_run_and_the_failures_feed(client: Any) -> None:
    # Given a failed run and a successful one,
    http, headers, system = client
    failed_id = http.post("/api/jobs/t_fail/trigger", headers=headers).json()["run_id"]
    ok_id = http.post("/api/jobs/t_count/trigger", headers=headers).json()["run_id"]
    system.drain()
    # then the failures feed lists the failure (of every job, or of t_fail), not the success;
    feed = http.get("/api/failures", headers=headers).json()
    assert [r["id"] for r in feed] == [failed_id] and "RuntimeError" in feed[0]["error"]
    assert [r["id"] for r in http.get("/api/failures?job=t_fail", headers=headers).json()] == [
        failed_id
    ]
    assert http.get("/api/failures?job=t_count", headers=headers).json() == []
    assert http.get("/api/failures?since=2999-01-01T00:00:00Z", headers=headers).json() == []
    assert http.get("/api/failures?job=nope", headers=headers).status_code == 404
    # When the successful run is retried, then 409 naming why, and nothing is queued;
    refused = http.post(f"/api/runs/{ok_id}/retry", headers=headers)
    assert refused.status_code == 409 and "not failed" in refused.json()["detail"]
    # when the failed one is retried, then a new run of its job, linked to it, runs.
    answer = http.post(f"/api/runs/{failed_id}/retry", headers=headers)
    assert answer.status_code == 202
    retry_id = answer.json()["run_id"]
    system.drain()
    retry = _run(http, headers, retry_id)
    assert retry["retry_of"] == failed_id and retry["trigger"] == "retry"
    assert retry["job_name"] == "t_fail" and retry["status"] == "failed"
    (row,) = _audit(system, "retry")
    assert row.target == f"run:{failed_id}" and row.after == {"retry_run_id": retry_id}


def test_audit_lists_every_change_with_before_and_after(client: Any) -> None:
    # Given changes made through the API,
    http, headers, _system = client
    http.post("/api/jobs/t_count/disable", headers=headers)
    http.put("/api/jobs/t_count/schedule", json={"interval": "10 minutes"}, headers=headers)
    # when both times and an interval are given, then nothing is saved, nor audited;
    bad = {"times": "02:30", "interval": "05:00"}
    assert http.put("/api/jobs/t_count/schedule", json=bad, headers=headers).status_code == 422
    # then the audit log lists them newest first: who, what, before → after.
    rows = http.get("/api/audit", headers=headers).json()
    assert [(r["actor"], r["action"], r["target"].split(":")[0]) for r in rows] == [
        ("tests", "set-schedule", "job"),
        ("tests", "disable", "job"),
        ("system", "token-create", "token"),  # the fixture's token
    ]
    assert rows[0]["before"] == {"times": None, "interval_s": None}
    assert rows[0]["after"] == {"times": None, "interval_s": 600}
    assert rows[1]["before"] == {"enabled": True} and rows[1]["after"] == {"enabled": False}
    only = http.get("/api/audit?action=disable", headers=headers).json()
    assert [r["action"] for r in only] == ["disable"]


def test_the_cancel_flag_reads_the_database_at_most_once_a_second(
    embedded: Any, monkeypatch: Any
) -> None:
    # Given a run's context, and a count of the database sessions it opens,
    from workers import context as context_module

    run_id = control.trigger(embedded.db, None, "t_count")
    ctx = RunContext(run_id, "t_count", None, embedded.db.settings, embedded.db)
    opened = []
    real = embedded.db.session

    def counting() -> Any:
        opened.append(1)
        return real()

    monkeypatch.setattr(embedded.db, "session", counting)
    clock = [1000.0]
    monkeypatch.setattr(context_module.time, "monotonic", lambda: clock[0])
    # when a job asks a thousand times within a second, then one read, and no cancel;
    assert not any(ctx.cancelled for _ in range(1000))
    assert len(opened) == 1
    # when a cancel is requested, then the next read (a second later) sees it, for good.
    monkeypatch.setattr(embedded.db, "session", real)
    control.cancel_run(embedded.db, run_id)
    monkeypatch.setattr(embedded.db, "session", counting)
    assert not ctx.cancelled  # still within the second
    clock[0] += 1.0
    assert ctx.cancelled and ctx.cancelled
    assert len(opened) == 2
    with pytest.raises(RunCancelled, match="was canceled"):
        ctx.check_cancelled()
