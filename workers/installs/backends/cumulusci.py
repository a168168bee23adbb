""":class:`CumulusCIOrgBackend`: plan steps run by the real CumulusCI.

``TICKWORK_ORG_BACKEND=workers.installs.backends.cumulusci:CumulusCIOrgBackend``.
CumulusCI cannot be imported here (it needs sqlalchemy<2), so each step runs in a fresh
``cumulusci_runner.py`` process in the CumulusCI virtualenv (``TICKWORK_CUMULUSCI_PYTHON``,
made by ``scripts/install_cumulusci.sh``), driven over :mod:`.cumulusci_protocol`. The
runner is its own process group, so a timeout, a cancel that is not honoured in
``cumulusci_cancel_grace_s`` or the worker's shutdown kills it and every child it began.
Credentials travel only on the runner's stdin, after the version handshake.

A step's ``path`` is a CumulusCI task (``kind`` ``task``) or flow (``kind`` ``flow``)
name, optionally followed by its options as a JSON object:
``command {"command": "sfdx --version"}``; a flow's options are keyed by task name.
A preflight check's ``path`` is a task in the same form: it passes when the task does.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, ClassVar

from schema.engine import Database
from tickwork.scrub import scrub
from tickwork.settings import Settings
from workers.installs.backends import cumulusci_protocol as proto
from workers.installs.backends.protocol import (
    BackendError,
    OrgRef,
    OutputSink,
    ScratchOrgInfo,
    StepCanceled,
    StepFailed,
    StepOutcome,
    StepSpec,
    TransientBackendError,
)

RUNNER = Path(__file__).with_name("cumulusci_runner.py")
ROOT = Path(__file__).resolve().parents[3]
DEFAULT_VENV = ROOT / ".venv-cumulusci"
CANCEL_POLL_S = 1.0
PROJECT_YML = "project:\n    name: tickwork-step\n"


class CumulusCIEnvironmentError(BackendError):
    """The CumulusCI interpreter is missing, broken, or the wrong version."""


def cumulusci_python(settings: Settings) -> Path:
    """The configured CumulusCI interpreter, or the checkout's ``.venv-cumulusci``."""
    return Path(settings.cumulusci_python or DEFAULT_VENV / "bin" / "python").absolute()


def check_environment(settings: Settings) -> str:
    """Start the runner, check its handshake, stop it: a line for ``tickwork check``."""
    with _Runner(settings, OrgRef(org_id="check")) as runner:
        hello = runner.hello
    return f"cumulusci {hello.cumulusci} on Python {hello.python} ({runner.python})"


def parse_step_path(path: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name {json options}`` → (name, options); StepFailed says what is wrong."""
    name, _, rest = path.strip().partition(" ")
    if not name:
        raise StepFailed("the step's path names no CumulusCI task or flow")
    options: Any = {}
    if rest.strip():
        try:
            options = json.loads(rest)
        except ValueError as exc:
            raise StepFailed(f"options of {name!r} are not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise StepFailed(f"options of {name!r} must be a JSON object, not {type(options).__name__}")
    return name, options


class CumulusCIOrgBackend:
    """Steps and checks are CumulusCI tasks and flows, run by CumulusCI itself."""

    # run_flows passes ``should_cancel``: a cancel can stop a flow between its tasks.
    cancels_mid_step: ClassVar[bool] = True

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        python = cumulusci_python(settings)
        if not python.exists():
            raise CumulusCIEnvironmentError(
                f"TICKWORK_CUMULUSCI_PYTHON: {python} does not exist; create the CumulusCI "
                "environment with `bash scripts/install_cumulusci.sh`"
            )

    def run_step(
        self,
        org: OrgRef,
        step: StepSpec,
        timeout_s: float,
        on_output: OutputSink | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StepOutcome:
        if step.kind not in ("task", "flow"):
            raise StepFailed(f"step {step.name!r}: kind {step.kind!r} is not a CumulusCI task/flow")
        name, options = parse_step_path(step.path)
        request = {"kind": step.kind, "name": name, "options": options}
        with _Runner(self.settings, org) as runner:
            final, output = runner.run(request, timeout_s, on_output, should_cancel)
        if isinstance(final, proto.Cancelled):
            raise StepCanceled(f"step {step.name!r} canceled: {final.message}", output)
        message = scrub(final.message, org.secrets)
        if final.status == "error":
            if final.transient:
                raise TransientBackendError(f"step {step.name!r}: {message}")
            raise StepFailed(f"step {step.name!r} failed: {message}", output)
        return StepOutcome(final.status, message, output)

    def run_check(self, org: OrgRef, check: StepSpec, timeout_s: float) -> str | None:
        name, options = parse_step_path(check.path)
        with _Runner(self.settings, org) as runner:
            final, _ = runner.run(
                {"kind": "task", "name": name, "options": options}, timeout_s, None, None
            )
        if isinstance(final, proto.Cancelled):
            return final.message
        if final.status == "error" and final.transient:
            raise TransientBackendError(f"check {check.name!r}: {final.message}")
        return None if final.status == "ok" else scrub(final.message, org.secrets) or final.status

    def create_scratch_org(self, config: dict[str, Any], timeout_s: float) -> ScratchOrgInfo:
        raise StepFailed(
            "the CumulusCI backend cannot create scratch orgs yet: that needs a Salesforce "
            "Dev Hub and the sf CLI (see docs/INSTALLS.md)"
        )

    def delete_scratch_org(self, org_id: str, timeout_s: float) -> None:
        raise StepFailed(
            f"the CumulusCI backend cannot delete scratch org {org_id} yet: that needs a "
            "Salesforce Dev Hub and the sf CLI (see docs/INSTALLS.md)"
        )


class _Runner:
    """One runner process: started in its own session, handshaken, always reaped."""

    def __init__(self, settings: Settings, org: OrgRef) -> None:
        self.settings, self.org = settings, org
        self.python = cumulusci_python(settings)
        self.lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self.home = tempfile.mkdtemp(prefix="tickwork-cci-")
        self.proc: subprocess.Popen[str] | None = None
        self.hello: proto.Hello

    def __enter__(self) -> _Runner:
        if not self.python.exists():
            shutil.rmtree(self.home, ignore_errors=True)
            raise CumulusCIEnvironmentError(
                f"TICKWORK_CUMULUSCI_PYTHON: {self.python} does not exist; create the "
                "CumulusCI environment with `bash scripts/install_cumulusci.sh`"
            )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,  # CumulusCI's ~/.cumulusci: per step, removed after it
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8",
            # tickwork holds and refreshes the OAuth tokens; CumulusCI must not try.
            "CUMULUSCI_DISABLE_REFRESH": "1",
        }
        try:
            self.proc = subprocess.Popen(
                [str(self.python), "-u", str(RUNNER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                cwd=self.home,
                start_new_session=True,
            )
        except OSError as exc:
            shutil.rmtree(self.home, ignore_errors=True)
            raise CumulusCIEnvironmentError(f"cannot start {self.python}: {exc}") from None
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for source, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._pump, args=(source, stream), daemon=True).start()
        try:
            self.hello = self._handshake()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _pump(self, source: str, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put((source, line.rstrip("\n")))
        self.lines.put((source, None))

    def _handshake(self) -> proto.Hello:
        deadline = time.monotonic() + self.settings.cumulusci_start_timeout_s
        errors: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CumulusCIEnvironmentError(
                    f"the CumulusCI runner ({self.python}) did not start within "
                    f"{self.settings.cumulusci_start_timeout_s} s"
                )
            try:
                source, line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if source == "err":
                if line is not None:
                    errors.append(line)
                continue
            if line is None:
                tail = "; ".join(errors[-3:]) or "no output"
                raise CumulusCIEnvironmentError(
                    f"the CumulusCI runner ({self.python}) exited before its handshake: {tail}"
                )
            try:
                hello = proto.parse_line(line)
            except proto.ProtocolError as exc:
                raise CumulusCIEnvironmentError(
                    f"the CumulusCI runner's handshake: {exc}"
                ) from None
            if not isinstance(hello, proto.Hello):
                raise CumulusCIEnvironmentError(f"the runner began with {hello.type}, not hello")
            if hello.error or hello.cumulusci is None:
                raise CumulusCIEnvironmentError(
                    f"{self.python} (Python {hello.python}): {hello.error}; create the CumulusCI "
                    "environment with `bash scripts/install_cumulusci.sh`"
                )
            major = hello.cumulusci.split(".")[0]
            if major != str(proto.SUPPORTED_CUMULUSCI_MAJOR):
                raise CumulusCIEnvironmentError(
                    f"{self.python} has cumulusci {hello.cumulusci}; the runner needs "
                    f"{proto.SUPPORTED_CUMULUSCI_MAJOR}.x (requirements/cumulusci.txt)"
                )
            return hello

    def _send(self, message: proto.Message) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(message.to_line())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it exited; what it said (or did not) decides the outcome

    def run(
        self,
        step: dict[str, Any],
        timeout_s: float,
        on_output: OutputSink | None,
        should_cancel: Callable[[], bool] | None,
    ) -> tuple[proto.Result | proto.Cancelled, str]:
        """Send the request, stream the log, return the final message and the whole log."""
        org = {
            "org_id": self.org.org_id,
            "instance_url": self.org.instance_url,
            "access_token": self.org.access_token,
        }
        project = self.settings.cumulusci_project_dir
        if project is None:
            project = Path(self.home) / "project"
            project.mkdir()
            (project / "cumulusci.yml").write_text(PROJECT_YML)
        self._send(proto.Run(step=step, org=org, project_dir=str(project)))
        secrets = self.org.secrets
        output: list[str] = []
        deadline = time.monotonic() + timeout_s
        next_poll = time.monotonic() + CANCEL_POLL_S
        cancel_deadline: float | None = None
        open_streams = 2

        def log(line: str) -> None:
            text = (scrub(line, secrets) or "") + "\n"
            output.append(text)
            if on_output is not None:
                on_output(text)

        while True:
            now = time.monotonic()
            if now >= deadline:
                self._stop()
                raise StepFailed(f"exceeded its time limit of {timeout_s:g} s", "".join(output))
            if cancel_deadline is not None and now >= cancel_deadline:
                self._stop()
                return proto.Cancelled(message="killed: did not stop in time"), "".join(output)
            if should_cancel is not None and cancel_deadline is None and now >= next_poll:
                next_poll = now + CANCEL_POLL_S
                if should_cancel():
                    log("Cancel requested: stopping before the next CumulusCI task.")
                    self._send(proto.Cancel())
                    cancel_deadline = now + self.settings.cumulusci_cancel_grace_s
            try:
                source, line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
                if source == "out":
                    code = self.proc.wait(timeout=5) if self.proc is not None else None
                    raise StepFailed(
                        f"the CumulusCI runner exited (status {code}) without a result",
                        "".join(output),
                    )
                continue
            if source == "err":
                log(line)
                continue
            try:
                message = proto.parse_line(line)
            except proto.ProtocolError as exc:
                self._stop()
                raise StepFailed(f"the CumulusCI runner broke the protocol: {exc}") from None
            if isinstance(message, proto.LogLine):
                log(message.line)
            elif isinstance(message, proto.StepStarted):
                log(f"CumulusCI task {message.step_num} {message.task!r} started")
            elif isinstance(message, proto.TaskResult):
                detail = f": {message.message}" if message.message else ""
                log(f"CumulusCI task {message.step_num} {message.task!r}: {message.status}{detail}")
            elif isinstance(message, proto.Result | proto.Cancelled):
                self._drain_stderr(log)
                return message, "".join(output)

    def _drain_stderr(self, log: Callable[[str], None]) -> None:
        """What the runner printed just before its result still belongs to the log."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return
        time.sleep(0.05)
        while True:
            try:
                source, line = self.lines.get_nowait()
            except queue.Empty:
                return
            if source == "err" and line is not None:
                log(line)

    def _stop(self) -> None:
        """Kill the runner's whole process group, including any child a task left behind.
        (A group id is not reused while the group has members, so this cannot hit others.)"""
        proc = self.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass
        shutil.rmtree(self.home, ignore_errors=True)
