"""run_flows on SQLite, called directly: every way a job can end, and never twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dramatiq.middleware import Shutdown, TimeLimitExceeded
from sqlalchemy import select

from schema.engine import Database
from schema.installs import JOB_CANCELED, JOB_INTERRUPTED, Job, JobStepResult
from tests.install_data import ACCESS_TOKEN, add_job, get_job, make_plan, make_user
from tickwork.contracts import RunFlows
from tickwork.events import StatusEvent, local_events
from workers.installs.backends.local import LocalOrgBackend
from workers.installs.backends.protocol import (
    OrgRef,
    StepFailed,
    StepOutcome,
    StepSpec,
    TransientBackendError,
)
from workers.installs.run_flows import run_flows

MSG = "message-1"


@pytest.fixture
def env(sqlite_db: Database) -> Iterator[tuple[Any, Database, list[StatusEvent]]]:
    """Settings, a migrated SQLite database, and the status events sent on it."""
    settings = sqlite_db.settings
    events: list[StatusEvent] = []
    listeners = local_events(settings).listeners
    listeners.append(events.append)
    yield settings, sqlite_db, events
    listeners.remove(events.append)


def _job(db: Database, plan: Any, user_id: int, steps: list[int] | None = None, **kw: Any) -> int:
    """A job of ``plan`` as the enqueuer leaves it: its message id recorded."""
    return add_job(db, plan, user_id, steps=steps, message_id=MSG, **kw)


def _results(db: Database, job_id: int) -> list[tuple[int, str]]:
    with db.session() as s:
        rows = s.scalars(select(JobStepResult).where(JobStepResult.job_id == job_id))
        return sorted((r.step_id, r.status) for r in rows)


def test_selected_steps_run_in_plan_order_and_the_job_completes(env: Any, tmp_path: Path) -> None:
    settings, db, events = env
    # Given a plan with a command, a warning callable and an optional step not selected,
    plan = make_plan(
        db,
        [
            ("Echo", "command", 'echo "installing into $TICKWORK_ORG_ID"', True),
            ("Layout", "task", "tests.install_data:warn_step", True),
            ("Extras", "task", "tests.install_data:ok_step", False),
        ],
    )
    user = make_user(db)
    job_id = _job(db, plan, user, steps=plan.step_ids[:2])
    # when run_flows runs it,
    status = run_flows(db, settings, LocalOrgBackend(settings, db), RunFlows(job_id=job_id), MSG)
    # then both selected steps ran, each result stored, the job complete with success_at,
    assert status == "complete"
    job = get_job(db, job_id)
    assert job.status == "complete" and job.success_at is not None and job.exception is None
    assert _results(db, job_id) == [(plan.step_ids[0], "ok"), (plan.step_ids[1], "warn")]
    assert "installing into 00DORG" in job.log and "Step 'Layout': warn" in job.log
    assert "Extras" not in job.log
    # and the UI was told it started and completed.
    assert [(e.kind, e.id, e.status) for e in events] == [
        ("job", str(job_id), "started"),
        ("job", str(job_id), "completed"),
    ]


def test_a_failing_step_fails_the_job_with_a_scrubbed_traceback(env: Any) -> None:
    settings, db, events = env
    plan = make_plan(
        db,
        [
            ("Boom", "task", "tests.install_data:leaky_failing_step", True),
            ("Never", "task", "tests.install_data:ok_step", True),
        ],
    )
    job_id = _job(db, plan, make_user(db))
    status = run_flows(db, settings, LocalOrgBackend(settings, db), RunFlows(job_id=job_id), MSG)
    assert status == "failed"
    job = get_job(db, job_id)
    assert job.exception is not None and "RuntimeError" in job.exception
    assert "Traceback" in job.exception and "leaky_failing_step" in job.exception
    stored = job.exception + job.log + str(_results(db, job_id))
    assert ACCESS_TOKEN not in stored and "hunter2" not in stored
    with db.session() as s:
        result = s.scalar(select(JobStepResult).where(JobStepResult.job_id == job_id))
        assert result is not None and result.status == "error"
        assert ACCESS_TOKEN not in (result.output + (result.message or ""))
    # The step after the failure never ran.
    assert _results(db, job_id) == [(plan.step_ids[0], "error")]
    assert events[-1].status == "failed"


def test_a_failing_command_keeps_its_output_scrubbed(env: Any) -> None:
    settings, db, _ = env
    plan = make_plan(
        db, [("Cmd", "command", 'echo "token=$TICKWORK_ACCESS_TOKEN oops" >&2; exit 3', True)]
    )
    job_id = _job(db, plan, make_user(db))
    assert run_flows(db, settings, LocalOrgBackend(settings, db), RunFlows(job_id=job_id), MSG) == (
        "failed"
    )
    job = get_job(db, job_id)
    assert job.exception is not None and "exited with status 3" in job.exception
    assert "oops" in job.exception and ACCESS_TOKEN not in job.exception


class _CancelAfterFirst(LocalOrgBackend):
    """Asks for a cancel while the first step runs, as a user would from the UI."""

    canceled = ""

    def run_step(
        self, org: OrgRef, step: StepSpec, timeout_s: float, on_output: Any = None
    ) -> StepOutcome:
        from producers.client import cancel_job

        outcome = super().run_step(org, step, timeout_s, on_output)
        with self.db.session() as s:
            job_id = s.scalar(select(Job.id))
        assert job_id is not None
        self.canceled = cancel_job(self.db, self.settings, job_id)
        return outcome


def test_a_cancel_request_stops_the_job_before_the_next_step(env: Any) -> None:
    settings, db, events = env
    plan = make_plan(
        db,
        [
            ("One", "task", "tests.install_data:ok_step", True),
            ("Two", "task", "tests.install_data:ok_step", True),
        ],
    )
    job_id = _job(db, plan, make_user(db))
    backend = _CancelAfterFirst(settings, db)
    # when the user cancels while the first step runs,
    status = run_flows(db, settings, backend, RunFlows(job_id=job_id), MSG)
    # then the running step finishes, the next one never starts, and the job says why.
    assert backend.canceled == "cancel requested"
    assert status == "canceled"
    job = get_job(db, job_id)
    assert job.exception == JOB_CANCELED and job.canceled_at is not None
    assert _results(db, job_id) == [(plan.step_ids[0], "ok")]
    assert events[-1].status == "canceled"


def test_a_redelivered_message_for_a_started_job_ends_it_interrupted_without_running(
    env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, db, _ = env
    marker = tmp_path / "marker"
    monkeypatch.setenv("INSTALL_MARKER", str(marker))
    plan = make_plan(db, [("Mark", "task", "tests.install_data:marker_step", True)])
    # Given a job a dead worker had started,
    job_id = _job(db, plan, make_user(db), status="started")
    # when its run_flows message is delivered again,
    status = run_flows(db, settings, LocalOrgBackend(settings, db), RunFlows(job_id=job_id), MSG)
    # then it ends canceled with the retry message and no step ran.
    assert status == "canceled"
    assert get_job(db, job_id).exception == JOB_INTERRUPTED
    assert not marker.exists() and _results(db, job_id) == []


def test_a_finished_job_or_a_stray_message_runs_nothing(
    env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, db, _ = env
    marker = tmp_path / "marker"
    monkeypatch.setenv("INSTALL_MARKER", str(marker))
    plan = make_plan(db, [("Mark", "task", "tests.install_data:marker_step", True)])
    user = make_user(db)
    done = _job(db, plan, user, status="complete")
    backend = LocalOrgBackend(settings, db)
    assert run_flows(db, settings, backend, RunFlows(job_id=done), MSG) == "complete"
    with db.session() as s:
        s.get(Job, done).org_id = "00DOTHER"  # type: ignore[union-attr]
    fresh = _job(db, plan, user)
    assert run_flows(db, settings, backend, RunFlows(job_id=fresh), "not-its-message") == "stray"
    assert run_flows(db, settings, backend, RunFlows(job_id=999), MSG) == "missing"
    assert not marker.exists() and get_job(db, fresh).status == "created"


class _Raises(LocalOrgBackend):
    def __init__(self, settings: Any, db: Database, exc: BaseException) -> None:
        super().__init__(settings, db)
        self.exc = exc

    def run_step(
        self, org: OrgRef, step: StepSpec, timeout_s: float, on_output: Any = None
    ) -> StepOutcome:
        raise self.exc


def test_worker_shutdown_mid_step_cancels_with_the_retry_message(env: Any) -> None:
    settings, db, events = env
    plan = make_plan(db, [("Slow", "task", "tests.install_data:ok_step", True)])
    job_id = _job(db, plan, make_user(db))
    status = run_flows(
        db, settings, _Raises(settings, db, Shutdown()), RunFlows(job_id=job_id), MSG
    )
    assert status == "canceled"
    assert get_job(db, job_id).exception == JOB_INTERRUPTED
    assert events[-1].status == "canceled"


def test_the_time_limit_fails_the_job_saying_so(env: Any) -> None:
    settings, db, _ = env
    plan = make_plan(db, [("Slow", "task", "tests.install_data:ok_step", True)])
    job_id = _job(db, plan, make_user(db))
    backend = _Raises(settings, db, TimeLimitExceeded())
    assert run_flows(db, settings, backend, RunFlows(job_id=job_id), MSG) == "failed"
    assert "time limit of 3600 s" in (get_job(db, job_id).exception or "")


def test_another_started_job_on_the_org_fails_this_one(env: Any) -> None:
    settings, db, _ = env
    plan = make_plan(db, [("One", "task", "tests.install_data:ok_step", True)])
    user = make_user(db)
    with db.session() as s:
        s.add(Job(plan_id=plan.plan_id, org_id="00DORG", user_id=user, steps=[], status="started"))
    job_id = _job(db, plan, user)
    backend = LocalOrgBackend(settings, db)
    assert run_flows(db, settings, backend, RunFlows(job_id=job_id), MSG) == "failed"
    assert "already running on this org" in (get_job(db, job_id).exception or "")


class _Flaky(LocalOrgBackend):
    """Unreachable twice (nothing done), then runs the step."""

    calls = 0

    def run_step(
        self, org: OrgRef, step: StepSpec, timeout_s: float, on_output: Any = None
    ) -> StepOutcome:
        self.calls += 1
        if self.calls < 3:
            raise TransientBackendError("connection refused")
        return super().run_step(org, step, timeout_s, on_output)


def test_a_transient_backend_error_is_retried_and_a_step_failure_is_not(env: Any) -> None:
    settings, db, _ = env
    plan = make_plan(db, [("One", "task", "tests.install_data:ok_step", True)])
    user = make_user(db)
    flaky = _Flaky(settings, db)
    job_id = _job(db, plan, user)
    assert run_flows(db, settings, flaky, RunFlows(job_id=job_id), MSG) == "complete"
    assert flaky.calls == 3
    with db.session() as s:
        s.get(Job, job_id).org_id = "00DDONE"  # type: ignore[union-attr]
    failing = _Raises(settings, db, StepFailed("bad metadata"))
    calls: list[int] = []
    original = failing.run_step

    def counted(*args: Any, **kwargs: Any) -> StepOutcome:
        calls.append(1)
        return original(*args, **kwargs)

    failing.run_step = counted  # type: ignore[method-assign]
    second = _job(db, plan, user)
    assert run_flows(db, settings, failing, RunFlows(job_id=second), MSG) == "failed"
    assert calls == [1]


def test_command_output_reaches_the_log_while_the_step_runs(env: Any) -> None:
    settings, db, _ = env
    plan = make_plan(
        db, [("Chatty", "command", "echo first line; sleep 1.6; echo second line", True)]
    )
    job_id = _job(db, plan, make_user(db))
    seen_during: list[str] = []

    class Watching(LocalOrgBackend):
        def run_step(
            self, org: OrgRef, step: StepSpec, timeout_s: float, on_output: Any = None
        ) -> StepOutcome:
            def sink(text: str) -> None:
                on_output(text)
                seen_during.append(get_job(db, job_id).log)

            return super().run_step(org, step, timeout_s, sink)

    assert run_flows(db, settings, Watching(settings, db), RunFlows(job_id=job_id), MSG) == (
        "complete"
    )
    # The first line was in the log while the step still ran; nothing is logged twice.
    assert any("first line" in log and "second line" not in log for log in seen_during)
    log = get_job(db, job_id).log
    assert log.count("first line") == 1 and log.count("second line") == 1
