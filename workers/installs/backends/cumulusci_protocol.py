"""The JSON-lines protocol between the cumulusci org backend and its runner process.

CumulusCI cannot be imported in tickwork's interpreter (it needs sqlalchemy<2), so the
backend starts ``cumulusci_runner.py`` in the CumulusCI virtualenv and talks to it one
JSON object per line. Every message carries ``v`` (:data:`PROTOCOL_VERSION`) and
``type``; both sides refuse any other version. This module is the one definition of
the messages: it imports only the standard library, because the runner loads it by
path in the other interpreter.

Conversation::

    runner → hello {cumulusci, python, error}      (error: CumulusCI is not importable)
    backend → run {step, org, project_dir}         (credentials only ever travel here)
    runner → step_started {task, step_num}         (per CumulusCI task of the step)
    runner → log {line}                            (any number, scrubbed by both sides)
    runner → task_result {task, step_num, status, message}
    backend → cancel {}                            (optional: stop before the next task)
    runner → result {status, message} | cancelled {message}    (then it exits)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
# CumulusCI releases the runner was written and tested against (its Python API).
SUPPORTED_CUMULUSCI_MAJOR = 4


class ProtocolError(ValueError):
    """A line that is not a message of this protocol version."""


@dataclass(frozen=True)
class Message:
    type: ClassVar[str] = ""

    def to_line(self) -> str:
        body = {"v": PROTOCOL_VERSION, "type": self.type, **asdict(self)}
        return json.dumps(body, separators=(",", ":")) + "\n"


@dataclass(frozen=True)
class Hello(Message):
    type: ClassVar[str] = "hello"
    cumulusci: str | None
    python: str
    error: str | None = None


@dataclass(frozen=True)
class Run(Message):
    """What to run: ``step`` is ``{kind: task|flow, name, options}``; ``org`` holds
    ``org_id``, ``instance_url`` and ``access_token`` (or is empty: no credentials)."""

    type: ClassVar[str] = "run"
    step: dict[str, Any]
    org: dict[str, Any] = field(repr=False)
    project_dir: str | None = None


@dataclass(frozen=True)
class Cancel(Message):
    type: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class StepStarted(Message):
    type: ClassVar[str] = "step_started"
    task: str
    step_num: str


@dataclass(frozen=True)
class LogLine(Message):
    type: ClassVar[str] = "log"
    line: str


@dataclass(frozen=True)
class TaskResult(Message):
    """One CumulusCI task's outcome: ``ok``, ``error``, or ``warn`` (it failed but the
    flow allows that task to fail)."""

    type: ClassVar[str] = "task_result"
    task: str
    step_num: str
    status: str
    message: str | None = None


@dataclass(frozen=True)
class Result(Message):
    """The step's end: ``ok``, ``warn`` or ``error``; ``transient`` when the org could not
    be reached before anything was done (the backend may retry)."""

    type: ClassVar[str] = "result"
    status: str
    message: str | None = None
    transient: bool = False


@dataclass(frozen=True)
class Cancelled(Message):
    type: ClassVar[str] = "cancelled"
    message: str = "canceled before the next task"


MESSAGES: dict[str, type[Message]] = {
    m.type: m for m in (Hello, Run, Cancel, StepStarted, LogLine, TaskResult, Result, Cancelled)
}


def parse_line(line: str) -> Message:
    """One line → its message; :class:`ProtocolError` names what is wrong."""
    try:
        body = json.loads(line)
    except ValueError:
        raise ProtocolError(f"not JSON: {line[:200]!r}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"not a JSON object: {line[:200]!r}")
    version = body.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version!r}, expected {PROTOCOL_VERSION} "
            "(the runner and the backend come from different tickwork versions)"
        )
    kind = body.pop("type", None)
    cls = MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(body) - names
    if unknown:
        raise ProtocolError(f"{kind}: unknown fields {sorted(unknown)}")
    try:
        return cls(**body)
    except TypeError as exc:
        raise ProtocolError(f"{kind}: {exc}") from None
