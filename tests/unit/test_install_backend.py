"""LocalOrgBackend runs steps for real: commands with a timeout, callables by path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schema import migrate
from schema.engine import Database
from tests.conftest import make_settings
from tests.install_data import ACCESS_TOKEN
from workers.installs.backends.commands import run_command
from workers.installs.backends.loader import load_backend
from workers.installs.backends.local import LocalOrgBackend
from workers.installs.backends.protocol import (
    BackendError,
    OrgBackend,
    OrgRef,
    StepFailed,
    StepSpec,
    TransientBackendError,
)
from workers.installs.backends.retry import with_backoff

ORG = OrgRef("00DORG", "https://x.my.salesforce.com", ACCESS_TOKEN)


@pytest.fixture
def backend(tmp_path: Path) -> LocalOrgBackend:
    settings = make_settings(tmp_path)
    db = Database(settings)
    migrate.upgrade(db.engine)
    return LocalOrgBackend(settings, db)


def test_a_command_runs_with_the_org_in_its_environment_and_secrets_scrubbed(
    backend: LocalOrgBackend,
) -> None:
    step = StepSpec(1, "Show", "command", 'echo "$TICKWORK_ORG_ID $TICKWORK_ACCESS_TOKEN"')
    outcome = backend.run_step(ORG, step, timeout_s=10)
    assert outcome.status == "ok"
    assert outcome.output.strip() == "00DORG ***"


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"timed out after 0.5 s") as raised:
        run_command(f"echo before; sleep 30 & echo $! > {pid_file}; wait", {}, 0.5, ())
    assert time.monotonic() - started < 10
    assert "before" in raised.value.output
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert _gone(child), "the command's background child survived the timeout"


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie (killed, waiting for an init that may not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_callable_steps_by_path(backend: LocalOrgBackend) -> None:
    warn = backend.run_step(ORG, StepSpec(1, "W", "task", "tests.install_data:warn_step"), 5)
    assert (warn.status, warn.message) == ("warn", "layout already customised")
    with pytest.raises(StepFailed, match="cannot import step"):
        backend.run_step(ORG, StepSpec(2, "X", "task", "tests.install_data:nope"), 5)
    with pytest.raises(StepFailed) as raised:
        backend.run_step(ORG, StepSpec(3, "L", "flow", "tests.install_data.leaky_failing_step"), 5)
    assert ACCESS_TOKEN not in str(raised.value) + raised.value.output
    assert "hunter2" not in raised.value.output and "Traceback" in raised.value.output


def test_scratch_orgs_are_org_records(backend: LocalOrgBackend) -> None:
    info = backend.create_scratch_org({}, timeout_s=5)
    assert info.org_id.startswith("00D")
    backend.delete_scratch_org(info.org_id, timeout_s=5)
    backend.delete_scratch_org(info.org_id, timeout_s=5)  # already gone: fine


def test_transient_errors_are_retried_with_backoff_and_others_are_not() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("refused")
        return "ok"

    assert with_backoff(flaky, retries=3, min_backoff_ms=10, max_backoff_ms=40, sleep=waits.append)
    assert len(calls) == 3 and len(waits) == 2 and all(0.004 <= w <= 0.04 for w in waits)

    def broken() -> None:
        calls.append(1)
        raise StepFailed("no")

    calls.clear()
    with pytest.raises(StepFailed):
        with_backoff(broken, retries=3, min_backoff_ms=1, max_backoff_ms=1, sleep=waits.append)
    assert len(calls) == 1

    def down() -> None:
        raise TransientBackendError("down")

    with pytest.raises(TransientBackendError):
        with_backoff(down, retries=2, min_backoff_ms=1, max_backoff_ms=1, sleep=lambda _: None)


def test_the_backend_is_chosen_by_setting(tmp_path: Path) -> None:
    db = Database(make_settings(tmp_path))
    assert isinstance(load_backend(make_settings(tmp_path), db), OrgBackend)
    bad = make_settings(tmp_path, TICKWORK_ORG_BACKEND="workers.installs.backends.local:Nope")
    with pytest.raises(BackendError, match=r"cannot load .workers.installs.backends.local:Nope"):
        load_backend(bad, db)
