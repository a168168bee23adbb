"""The CumulusCI org backend with the real CumulusCI (4.10, in .venv-cumulusci).

No Salesforce org is reachable here, so the steps are CumulusCI's org-free tasks
(``log``, ``command``, ``util_sleep``), a project's own Python task and flows of them;
the org path is exercised up to CumulusCI's first call to the org, against loopback.
Each runner start imports CumulusCI (~2 s): the tests share runs where they can.
Under CI=true a missing CumulusCI environment fails these tests instead of skipping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dramatiq.middleware import Shutdown
from sqlalchemy import select, update

from schema.engine import Database
from schema.installs import JOB_CANCELED, Job, JobStepResult
from tests.install_data import ACCESS_TOKEN, add_job, get_job, make_plan, make_user
from tickwork.contracts import RunFlows
from workers.installs.backends import cumulusci_protocol as proto
from workers.installs.backends.cumulusci import (
    DEFAULT_VENV,
    RUNNER,
    CumulusCIEnvironmentError,
    CumulusCIOrgBackend,
    check_environment,
    parse_step_path,
)
from workers.installs.backends.protocol import (
    OrgRef,
    StepCanceled,
    StepFailed,
    StepSpec,
    TransientBackendError,
)
from workers.installs.run_flows import run_flows

MSG = "message-1"
OFFLINE = OrgRef(org_id="00DOFFLINE")

PROJECT_YML = """\
project:
    name: tickwork-tests
tasks:
    hello:
        description: The project's own Python task
        class_path: tasks.hello.Hello
flows:
    tw_flow:
        steps:
            1:
                task: hello
                options:
                    who: the flow
            2:
                task: command
                options:
                    command: "echo allowed to fail; exit 1"
                ignore_failure: True
            3:
                task: log
                options:
                    line: after the allowed failure
    tw_slow:
        steps:
            1:
                task: util_sleep
                options:
                    seconds: 2
            2:
                task: log
                options:
                    line: the task after the sleep
"""

HELLO_TASK = """\
from cumulusci.core.tasks import BaseTask


class Hello(BaseTask):
    task_options = {"who": {"description": "whom to greet", "required": True}}
    salesforce_task = False

    def _run_task(self):
        self.logger.info(f"hello {self.options['who']}")
        self.return_values = {"greeted": self.options["who"]}
"""


@pytest.fixture(scope="module")
def cci_python() -> str:
    """The CumulusCI interpreter scripts/install_cumulusci.sh made (or the configured one)."""
    python = os.environ.get("TICKWORK_CUMULUSCI_PYTHON") or str(DEFAULT_VENV / "bin" / "python")
    if not Path(python).exists():
        why = f"no CumulusCI environment at {python}: run bash scripts/install_cumulusci.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return python


@pytest.fixture
def env(sqlite_db: Database, cci_python: str, tmp_path: Path) -> tuple[Any, Database]:
    project = tmp_path / "project"
    (project / "tasks").mkdir(parents=True)
    (project / "cumulusci.yml").write_text(PROJECT_YML)
    (project / "tasks" / "hello.py").write_text(HELLO_TASK)
    settings = sqlite_db.settings.model_copy(
        update={
            "cumulusci_python": cci_python,
            "cumulusci_project_dir": project,
            "cumulusci_cancel_grace_s": 10.0,
            "backend_retries": 0,
        }
    )
    return settings, sqlite_db


def _results(db: Database, job_id: int) -> list[tuple[int, str]]:
    with db.session() as s:
        rows = s.scalars(select(JobStepResult).where(JobStepResult.job_id == job_id))
        return sorted((r.step_id, r.status) for r in rows)


def _no_process(marker: str) -> bool:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return found.stdout.strip() == ""


def test_a_plan_of_tasks_and_a_flow_runs_in_cumulusci(env: Any) -> None:
    settings, db = env
    # Given a plan: a standard task with options, the project's own Python task, a
    # project flow in which one task may fail, and a command that fails,
    plan = make_plan(
        db,
        [
            ("Log", "task", 'log {"line": "first step says hi"}', True),
            ("Hello", "task", 'hello {"who": "tickwork"}', True),
            ("Flow", "flow", "tw_flow", True),
            ("Fails", "task", 'command {"command": "echo about to fail; exit 3"}', True),
            ("Never", "task", 'log {"line": "must not run"}', True),
        ],
    )
    job_id = add_job(db, plan, make_user(db, token=False), message_id=MSG)
    # when run_flows runs it through the CumulusCI backend,
    backend = CumulusCIOrgBackend(settings, db)
    status = run_flows(db, settings, backend, RunFlows(job_id=job_id), MSG)
    # then CumulusCI ran each step: options reached the tasks, the project's task ran,
    job = get_job(db, job_id)
    assert "first step says hi" in job.log
    assert "hello tickwork" in job.log and "hello the flow" in job.log
    # the flow's allowed failure made its step a warning and the flow went on,
    assert "'command': warn: CommandException: Return code: 1" in job.log
    assert "after the allowed failure" in job.log
    # the failing command failed the job with CumulusCI's reason, and nothing ran after.
    assert status == "failed" and job.status == "failed"
    assert job.exception is not None and "Return code: 3" in job.exception
    assert "about to fail" in job.log and "must not run" not in job.log
    ids = plan.step_ids
    assert _results(db, job_id) == [
        (ids[0], "ok"),
        (ids[1], "ok"),
        (ids[2], "warn"),
        (ids[3], "error"),
    ]


def test_a_cancel_stops_a_flow_before_its_next_task(env: Any) -> None:
    settings, db = env
    # Given a job whose flow sleeps, then logs,
    plan = make_plan(db, [("Slow", "flow", "tw_slow", True)])
    job_id = add_job(db, plan, make_user(db, token=False), message_id=MSG)

    def cancel_when_sleeping() -> None:  # as a user would from the UI
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "'util_sleep' started" in get_job(db, job_id).log:
                with db.session() as s:
                    s.execute(
                        update(Job)
                        .where(Job.id == job_id)
                        .values(cancel_requested_at=Job.created_at)
                    )
                return
            time.sleep(0.1)

    canceler = threading.Thread(target=cancel_when_sleeping)
    canceler.start()
    # when a cancel is asked for during the sleep,
    status = run_flows(
        db, settings, CumulusCIOrgBackend(settings, db), RunFlows(job_id=job_id), MSG
    )
    canceler.join()
    # then the runner stopped before the flow's next task and the job is canceled.
    job = get_job(db, job_id)
    assert status == "canceled" and job.exception == JOB_CANCELED
    assert "the task after the sleep" not in job.log
    assert "Cancel requested" in job.log
    assert _results(db, job_id) == [(plan.step_ids[0], "error")]


def test_a_cancel_not_honoured_in_time_kills_the_process_group(env: Any) -> None:
    settings, db = env
    settings = settings.model_copy(update={"cumulusci_cancel_grace_s": 0.5})
    marker = "sleep 123.4567"
    step = StepSpec(1, "Long", "task", f'command {{"command": "{marker}"}}')
    started = time.monotonic()
    # Given a task that cannot stop by itself, when a cancel is asked for once CumulusCI
    # has started its command (not at a fixed time: a loaded machine starts it later),
    with pytest.raises(StepCanceled, match="did not stop in time"):
        CumulusCIOrgBackend(settings, db).run_step(
            OFFLINE, step, 60, should_cancel=lambda: not _no_process(marker)
        )
    # then the runner and its command were killed within the grace period.
    assert time.monotonic() - started < 30
    assert _no_process(marker)


def test_a_step_over_its_time_limit_is_killed_and_fails(env: Any) -> None:
    settings, db = env
    marker = "sleep 234.5678"
    step = StepSpec(1, "Long", "task", f'command {{"command": "{marker}"}}')
    started = time.monotonic()
    with pytest.raises(StepFailed, match="exceeded its time limit of 3 s"):
        CumulusCIOrgBackend(settings, db).run_step(OFFLINE, step, 3)
    assert time.monotonic() - started < 20
    assert _no_process(marker)


def test_worker_shutdown_mid_step_kills_the_runner(env: Any) -> None:
    settings, db = env
    marker = "sleep 345.6789"
    step = StepSpec(1, "Long", "task", f'command {{"command": "echo begun; {marker}"}}')

    def shutdown_when_begun(text: str) -> None:  # dramatiq raises Shutdown in the actor
        if "begun" in text and "Running command" not in text:
            raise Shutdown("worker shutting down")

    with pytest.raises(Shutdown):
        CumulusCIOrgBackend(settings, db).run_step(OFFLINE, step, 60, shutdown_when_begun)
    assert _no_process(marker)


def test_a_runner_whose_backend_went_away_stops_before_the_next_task(env: Any) -> None:
    settings, _ = env
    # Given a runner in the middle of a flow (started by hand, as the backend would),
    runner = subprocess.Popen(
        [settings.cumulusci_python, str(RUNNER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(settings.cumulusci_project_dir)},
    )
    assert runner.stdin is not None and runner.stdout is not None
    step = {"kind": "flow", "name": "tw_slow", "options": {}}
    project = str(settings.cumulusci_project_dir)
    runner.stdin.write(proto.Run(step=step, org={}, project_dir=project).to_line())
    runner.stdin.flush()
    messages = []
    for line in runner.stdout:
        messages.append(proto.parse_line(line))
        if isinstance(messages[-1], proto.StepStarted):
            # when its stdin closes (the worker was SIGKILLed),
            runner.stdin.close()
    assert runner.wait(timeout=30) == 0
    # then it ends the flow before the next task, saying so.
    assert isinstance(messages[0], proto.Hello)
    assert isinstance(messages[-1], proto.Cancelled)
    started = [m.task for m in messages if isinstance(m, proto.StepStarted)]
    assert started == ["util_sleep"]


class _OrgStandIn:
    """A loopback listener standing where the org's instance would be: it records what
    CumulusCI sent and answers 401, as Salesforce does to a revoked token."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(conn.recv(65536).decode("latin-1"))
                body = b'[{"errorCode":"INVALID_SESSION_ID","message":"Session expired"}]'
                conn.sendall(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )


def test_the_org_credentials_reach_cumulusci_only_over_stdin(env: Any) -> None:
    settings, db = env
    stand_in = _OrgStandIn()
    org = OrgRef(org_id="00DORG", instance_url=stand_in.url, access_token=ACCESS_TOKEN)
    step = StepSpec(1, "Log", "task", 'log {"line": "never: the org refused"}')
    seen: list[str] = []
    # Given an org whose instance answers 401, when a step runs against it,
    with pytest.raises(StepFailed) as failed:
        CumulusCIOrgBackend(settings, db).run_step(org, step, 60, seen.append)
    # then CumulusCI's OrgConfig called the org with the token as its bearer token,
    assert any(
        f"Bearer {ACCESS_TOKEN}" in r and "/services/oauth2/userinfo" in r
        for r in stand_in.requests
    )
    # the step failed before running the task, and the token is in no output.
    assert "could not be used" in str(failed.value)
    assert "never: the org refused" not in "".join(seen)
    everything = str(failed.value) + failed.value.output + "".join(seen)
    assert ACCESS_TOKEN not in everything
    stand_in.sock.close()


def test_an_unreachable_org_is_a_transient_error(env: Any) -> None:
    settings, db = env
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    org = OrgRef(org_id="00DORG", instance_url=f"http://127.0.0.1:{port}", access_token="tok-x")
    with pytest.raises(TransientBackendError, match=r"Connection refused|ConnectionError"):
        CumulusCIOrgBackend(settings, db).run_step(org, StepSpec(1, "L", "task", "log"), 60)


def test_preflight_checks_are_cumulusci_tasks_that_pass_or_say_why(env: Any) -> None:
    settings, db = env
    backend = CumulusCIOrgBackend(settings, db)
    # (a passing task is a passing check: the same path as a step that succeeds)
    failing = StepSpec(2, "Fails", "check", 'command {"command": "exit 4"}')
    assert "Return code: 4" in (backend.run_check(OFFLINE, failing, 60) or "")


def test_a_missing_or_wrong_cumulusci_environment_is_named(sqlite_db: Database) -> None:
    settings = sqlite_db.settings
    # A path that does not exist: refused when the backend is built.
    missing = settings.model_copy(update={"cumulusci_python": "/nonexistent/bin/python"})
    with pytest.raises(CumulusCIEnvironmentError, match="/nonexistent/bin/python does not exist"):
        CumulusCIOrgBackend(missing, sqlite_db)
    # An interpreter without CumulusCI (tickwork's own): the handshake says so.
    wrong = settings.model_copy(update={"cumulusci_python": sys.executable})
    with pytest.raises(CumulusCIEnvironmentError, match="cannot import cumulusci"):
        check_environment(wrong)


@pytest.mark.parametrize(
    ("hello", "error"),
    [
        ('{"v":1,"type":"hello","cumulusci":"3.84.0","python":"3.11.7"}', "needs 4.x"),
        ('{"v":2,"type":"hello","cumulusci":"4.10.1","python":"3.11.7"}', "protocol version 2"),
        ("Traceback (most recent call last):", "not JSON"),
    ],
)
def test_a_runner_of_another_version_is_refused_at_the_handshake(
    sqlite_db: Database, tmp_path: Path, hello: str, error: str
) -> None:
    # An interpreter stand-in that answers the handshake as another version would.
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho '{hello}'\ncat >/dev/null\n")
    fake.chmod(0o755)
    settings = sqlite_db.settings.model_copy(update={"cumulusci_python": str(fake)})
    with pytest.raises(CumulusCIEnvironmentError, match=error):
        check_environment(settings)


def test_the_protocol_refuses_other_versions_and_unknown_messages() -> None:
    line = proto.Hello(cumulusci="4.10.1", python="3.11.7").to_line()
    assert proto.parse_line(line) == proto.Hello(cumulusci="4.10.1", python="3.11.7")
    with pytest.raises(proto.ProtocolError, match="protocol version 2, expected 1"):
        proto.parse_line(line.replace('"v":1', '"v":2'))
    with pytest.raises(proto.ProtocolError, match="unknown message type 'shout'"):
        proto.parse_line('{"v":1,"type":"shout"}')
    with pytest.raises(proto.ProtocolError, match="unknown fields"):
        proto.parse_line('{"v":1,"type":"log","line":"x","extra":1}')
    with pytest.raises(proto.ProtocolError, match="not JSON"):
        proto.parse_line("Traceback (most recent call last):")


def test_step_paths_name_a_task_and_its_json_options() -> None:
    assert parse_step_path('command {"command": "ls"}') == ("command", {"command": "ls"})
    assert parse_step_path("deploy") == ("deploy", {})
    with pytest.raises(StepFailed, match="not JSON"):
        parse_step_path("command {oops}")
    with pytest.raises(StepFailed, match="must be a JSON object"):
        parse_step_path("command [1]")


def test_tickwork_check_reports_the_cumulusci_environment(
    sqlite_db: Database, cci_python: str
) -> None:
    from admin.checks import collect_checks  # the CLI's checks, as `tickwork check` runs them

    backend = "workers.installs.backends.cumulusci:CumulusCIOrgBackend"
    good = sqlite_db.settings.model_copy(
        update={"org_backend": backend, "cumulusci_python": cci_python}
    )
    bad = good.model_copy(update={"cumulusci_python": sys.executable})
    [ok] = [r for r in collect_checks(good) if r.name == "cumulusci"]
    [fail] = [r for r in collect_checks(bad) if r.name == "cumulusci"]
    assert ok.ok and ok.detail.startswith("cumulusci 4.10.1")
    assert not fail.ok and "cannot import cumulusci" in fail.detail
    # The default (local) backend needs no CumulusCI, and the check is not shown.
    assert "cumulusci" not in [r.name for r in collect_checks(sqlite_db.settings)]
