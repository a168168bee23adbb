"""Runs one plan step with CumulusCI, in CumulusCI's own interpreter.

Executed by path (``<cumulusci venv>/bin/python cumulusci_runner.py``) by
:class:`workers.installs.backends.cumulusci.CumulusCIOrgBackend`; it imports nothing
from tickwork (tickwork's dependencies are not installed there), only the sibling
``cumulusci_protocol.py`` (standard library only) and CumulusCI. It speaks that
protocol on stdin/stdout; anything else that writes to stdout (a task's ``print``, a
subprocess) is sent to stderr, which the backend turns into log lines.

The step is one CumulusCI task (with options) or flow (with per-task options), run by
CumulusCI's ``FlowCoordinator``/``TaskRunner``. The org's credentials arrive on stdin
and only ever live in an in-memory ``OrgConfig`` and keychain. With no credentials, the
org is not contacted: only tasks that need no org can succeed.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import platform
import sys
import threading
import traceback
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
# Python put this file's directory first on sys.path; tickwork's backend module there is
# named cumulusci.py and would shadow the real package. Nothing here is imported by name.
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
_spec = importlib.util.spec_from_file_location(
    "cumulusci_protocol", os.path.join(_HERE, "cumulusci_protocol.py")
)
assert _spec is not None and _spec.loader is not None
p = importlib.util.module_from_spec(_spec)
sys.modules["cumulusci_protocol"] = p  # dataclasses look their module up by name
_spec.loader.exec_module(p)

MASK = "********"


class _Cancelled(Exception):
    pass


class _OrgUnreachable(Exception):
    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class _Channel:
    """The protocol's stdout: a private copy of fd 1, shared by threads under a lock."""

    def __init__(self, secrets: list[str]) -> None:
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)  # whatever else writes to stdout now goes to stderr
        sys.stdout = sys.stderr
        self._lock = threading.Lock()
        self.secrets = secrets

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, MASK)
        return text

    def send(self, message: Any) -> None:
        with self._lock:
            self._out.write(message.to_line())
            self._out.flush()


class _LogToChannel(logging.Handler):
    def __init__(self, channel: _Channel) -> None:
        super().__init__(logging.INFO)
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        except Exception:  # a broken log call must not end the step
            text = str(record.msg)
        for line in text.splitlines() or [""]:
            self.channel.send(p.LogLine(line=self.channel.scrub(line)))


def main() -> int:
    secrets: list[str] = []
    channel = _Channel(secrets)
    python = platform.python_version()
    try:
        import cumulusci
        from cumulusci.core.config import OrgConfig
        from cumulusci.core.flowrunner import (
            FlowCallback,
            FlowCoordinator,
            StepSpec,
            StepVersion,
        )
        from cumulusci.core.runtime import BaseCumulusCI
    except Exception as exc:
        channel.send(
            p.Hello(cumulusci=None, python=python, error=f"cannot import cumulusci: {exc}")
        )
        return 3
    channel.send(p.Hello(cumulusci=cumulusci.__version__, python=python))

    try:
        run = p.parse_line(sys.stdin.readline())
    except p.ProtocolError as exc:
        channel.send(p.Result(status="error", message=f"bad run request: {exc}"))
        return 2
    if not isinstance(run, p.Run):
        channel.send(p.Result(status="error", message=f"expected a run request, got {run.type}"))
        return 2
    org: dict[str, Any] = dict(run.org or {})
    secrets.extend(s for s in (org.get("access_token"), org.get("refresh_token")) if s)

    cancel = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            try:
                if isinstance(p.parse_line(line), p.Cancel):
                    cancel.set()
            except p.ProtocolError:
                continue
        cancel.set()  # the backend went away: stop at the next task boundary

    threading.Thread(target=listen, daemon=True).start()

    root = logging.getLogger()
    root.handlers[:] = [_LogToChannel(channel)]
    root.setLevel(logging.INFO)

    offline = not org.get("access_token")

    class TickworkFlowCoordinator(FlowCoordinator):  # type: ignore[misc]
        def _init_org(self) -> None:
            if offline:
                self.logger.info("No org credentials: running tasks that need no org only.")
                return
            try:
                super()._init_org()
            except Exception as exc:
                import requests

                transient = isinstance(exc, requests.ConnectionError | requests.Timeout)
                raise _OrgUnreachable(
                    f"the org at {org.get('instance_url')} could not be used: "
                    f"{type(exc).__name__}: {exc}",
                    transient,
                ) from exc

    warned: list[str] = []

    class Callbacks(FlowCallback):  # type: ignore[misc]
        def pre_task(self, step: Any) -> None:
            if cancel.is_set():
                raise _Cancelled()
            channel.send(p.StepStarted(task=step.task_name, step_num=str(step.step_num)))

        def post_task(self, step: Any, result: Any) -> None:
            exc = result.exception
            status = "ok" if exc is None else ("warn" if step.allow_failure else "error")
            if status == "warn":
                warned.append(step.task_name)
            message = None if exc is None else channel.scrub(f"{type(exc).__name__}: {exc}")
            channel.send(
                p.TaskResult(
                    task=step.task_name, step_num=str(step.step_num), status=status, message=message
                )
            )

    step = run.step
    kind, name, options = step.get("kind"), step.get("name"), step.get("options") or {}
    try:
        runtime = BaseCumulusCI(repo_info={"root": run.project_dir, "ci": None})
        project = runtime.project_config
        if project is None:
            raise ValueError(f"{run.project_dir} is not a CumulusCI project (no cumulusci.yml)")
        if kind == "task":
            task_config = project.get_task(name)
            config = copy.deepcopy(task_config.config)
            config["options"] = {**(config.get("options") or {}), **options}
            spec = StepSpec(
                step_num=StepVersion("1"),
                task_name=name,
                task_config=config,
                task_class=task_config.get_class(),
                project_config=project,
            )
            coordinator = TickworkFlowCoordinator.from_steps(
                project, [spec], name=name, callbacks=Callbacks()
            )
        elif kind == "flow":
            coordinator = TickworkFlowCoordinator(
                project, project.get_flow(name), name=name, options=options, callbacks=Callbacks()
            )
        else:
            raise ValueError(f"step kind must be task or flow, not {kind!r}")
        org_values = {k: v for k, v in org.items() if v is not None}
        org_config = OrgConfig(org_values, "current_org", keychain=runtime.keychain)
        coordinator.run(org_config)
    except _Cancelled:
        channel.send(p.Cancelled())
        return 0
    except _OrgUnreachable as exc:
        channel.send(
            p.Result(status="error", message=channel.scrub(str(exc)), transient=exc.transient)
        )
        return 0
    except Exception as exc:
        logging.getLogger("tickwork.runner").info(
            channel.scrub("".join(traceback.format_exception(exc, limit=20)))
        )
        channel.send(
            p.Result(status="error", message=channel.scrub(f"{type(exc).__name__}: {exc}"))
        )
        return 0
    if warned:
        channel.send(p.Result(status="warn", message=f"allowed to fail: {', '.join(warned)}"))
    else:
        channel.send(p.Result(status="ok"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
