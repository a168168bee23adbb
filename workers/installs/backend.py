"""Where install work really happens: the ``OrgBackend`` protocol and its local
implementation.

The actors only decide *what* runs and record outcomes; a backend decides *how*:
run one step or one preflight check against an org, create or delete a scratch org.
:class:`LocalOrgBackend` is real, not a mock: orgs are rows in ``orgs``; a step whose
``kind`` is ``command`` is a shell command run in its own process group with a timeout
and its output captured; any other step (``task``/``flow``) is a Python callable named
``package.module:function``. A CumulusCI backend implements the same four methods
(see docs/INSTALLS.md).

Errors are split by meaning, because the callers treat them differently:
:class:`StepFailed` (the step ran and failed: never retried, the job fails) and
:class:`TransientBackendError` (the backend could not be reached and *nothing was
done*: retried with backoff).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import signal
import subprocess
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from sqlalchemy import delete, select

from schema.engine import Database
from schema.orgs import Org
from tickwork.errors import TickworkError
from tickwork.scrub import scrub
from tickwork.settings import Settings

T = TypeVar("T")
OutputSink = Callable[[str], None]
OUTPUT_LIMIT_CHARS = 64_000
STEP_STATUSES = ("ok", "warn", "error", "skip")


class BackendError(TickworkError):
    """Base of what an org backend raises on purpose."""


class StepFailed(BackendError):
    """A step (or scratch-org operation) ran and failed; ``output`` is what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class TransientBackendError(BackendError):
    """The backend was unreachable (refused, timed out) before doing anything."""


@dataclass(frozen=True)
class OrgRef:
    """The org a step runs against, with the credentials to reach it."""

    org_id: str
    instance_url: str | None = None
    access_token: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.access_token,) if s)


@dataclass(frozen=True)
class StepSpec:
    """What to run: a step of a plan, or a preflight check (``kind`` ``check``)."""

    id: int
    name: str
    kind: str  # task | flow | command | check
    path: str


@dataclass
class StepOutcome:
    status: str  # ok | warn | error | skip
    message: str | None = None
    output: str = ""

    def __post_init__(self) -> None:
        if self.status not in STEP_STATUSES:
            raise ValueError(f"step status must be one of {STEP_STATUSES}, not {self.status!r}")


@dataclass(frozen=True)
class ScratchOrgInfo:
    org_id: str
    instance_url: str | None = None


@runtime_checkable
class OrgBackend(Protocol):
    """What tickwork needs from whatever talks to orgs."""

    def run_step(
        self,
        org: OrgRef,
        step: StepSpec,
        timeout_s: float,
        on_output: OutputSink | None = None,
    ) -> StepOutcome:
        """Run one plan step. Raise StepFailed when it fails; return its outcome.

        A backend that can stream calls ``on_output`` with scrubbed output as it grows
        (run_flows appends it to the job's log); the outcome still carries all of it."""
        ...

    def run_check(self, org: OrgRef, check: StepSpec, timeout_s: float) -> str | None:
        """Run one preflight check: ``None`` when it passes, else why it failed."""
        ...

    def create_scratch_org(self, config: dict[str, Any], timeout_s: float) -> ScratchOrgInfo:
        """Create a scratch org and wait for it (at most ``timeout_s``)."""
        ...

    def delete_scratch_org(self, org_id: str, timeout_s: float) -> None:
        """Delete a scratch org; deleting one that is already gone is not an error."""
        ...


def load_backend(settings: Settings, db: Database) -> OrgBackend:
    """Instantiate ``settings.org_backend`` (``module:Class``, built with settings and db)."""
    module_name, _, class_name = settings.org_backend.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise BackendError(
            f"TICKWORK_ORG_BACKEND: cannot load {settings.org_backend!r}: {exc}"
        ) from None
    backend = cls(settings, db)
    if not isinstance(backend, OrgBackend):
        raise BackendError(f"TICKWORK_ORG_BACKEND: {settings.org_backend!r} is not an OrgBackend")
    return backend


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientBackendError | ConnectionError | TimeoutError)


def with_backoff(
    fn: Callable[[], T],
    *,
    retries: int,
    min_backoff_ms: int,
    max_backoff_ms: int,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on a transient error wait (exponential, jittered) and call again."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or attempt >= retries:
                raise
            delay_ms = min(max_backoff_ms, min_backoff_ms * 2**attempt)
            sleep(random.uniform(delay_ms / 2, delay_ms) / 1000)
            attempt += 1


def import_callable(path: str) -> Callable[..., Any]:
    """``package.module:function`` (or ``package.module.function``) → the function."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise StepFailed(f"{path!r} is not a callable path (use package.module:function)")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise StepFailed(f"cannot import step {path!r}: {type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise StepFailed(f"step {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


def run_command(
    command: str,
    env: dict[str, str],
    timeout_s: float,
    secrets: tuple[str, ...],
    on_output: OutputSink | None = None,
) -> tuple[int, str]:
    """Run ``command`` with ``/bin/sh`` in its own process group; return (exit code, output).

    The wait is a short poll loop, not one blocking call, so the worker's shutdown
    notification (an exception raised in this thread) arrives within a quarter second;
    on that exception, or on timeout, the whole process group is killed. ``on_output``
    gets the output as it grows, in whole lines, scrubbed, about once a second.
    """
    with tempfile.TemporaryFile(mode="w+b") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        tail = _Tail(out.fileno(), secrets, on_output)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    tail.poll()
                    if time.monotonic() >= deadline:
                        _kill_group(proc)
                        out.seek(0)
                        text = _clip(out.read().decode(errors="replace"))
                        raise StepFailed(
                            f"command timed out after {timeout_s:g} s",
                            scrub(text, secrets) or "",
                        ) from None
        except BaseException:
            _kill_group(proc)
            raise
        tail.poll(final=True)
        out.seek(0)
        return code, scrub(_clip(out.read().decode(errors="replace")), secrets) or ""


class _Tail:
    """Hands new output lines to a sink without moving the file offset the child writes at
    (``os.pread``: the child shares the open file, so a seek would misplace its writes)."""

    def __init__(self, fd: int, secrets: tuple[str, ...], sink: OutputSink | None) -> None:
        self.fd, self.secrets, self.sink = fd, secrets, sink
        self.offset = 0
        self.last = time.monotonic()

    def poll(self, final: bool = False) -> None:
        if self.sink is None or (not final and time.monotonic() - self.last < 1.0):
            return
        self.last = time.monotonic()
        data = os.pread(self.fd, 1 << 20, self.offset)
        if not final:
            data = data[: data.rfind(b"\n") + 1]  # whole lines only: secrets are never split
        if data:
            self.offset += len(data)
            self.sink(scrub(data.decode(errors="replace"), self.secrets) or "")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _clip(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT_CHARS:
        return text
    return "[... output clipped ...]\n" + text[-OUTPUT_LIMIT_CHARS:]


class LocalOrgBackend:
    """Orgs are ``orgs`` rows; steps run for real on this machine."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    def _env(self, org: OrgRef) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWORK_")}
        env["TICKWORK_ORG_ID"] = org.org_id
        env["TICKWORK_INSTANCE_URL"] = org.instance_url or ""
        env["TICKWORK_ACCESS_TOKEN"] = org.access_token or ""
        return env

    def run_step(
        self,
        org: OrgRef,
        step: StepSpec,
        timeout_s: float,
        on_output: OutputSink | None = None,
    ) -> StepOutcome:
        if step.kind == "command":
            env = self._env(org)
            code, output = run_command(step.path, env, timeout_s, org.secrets, on_output)
            if code != 0:
                raise StepFailed(f"step {step.name!r}: command exited with status {code}", output)
            return StepOutcome("ok", None, output)
        fn = import_callable(step.path)
        try:
            result = fn(org)
        except BackendError:
            raise
        except Exception as exc:
            text = "".join(traceback.format_exception(exc, limit=20))
            raise StepFailed(
                scrub(f"step {step.name!r} raised {type(exc).__name__}: {exc}", org.secrets) or "",
                scrub(text, org.secrets) or "",
            ) from exc
        return _as_outcome(result, org)

    def run_check(self, org: OrgRef, check: StepSpec, timeout_s: float) -> str | None:
        if check.kind == "command" or not _looks_like_callable(check.path):
            code, output = run_command(check.path, self._env(org), timeout_s, org.secrets)
            if code == 0:
                return None
            return (output.strip().splitlines() or [f"exited with status {code}"])[-1]
        result = import_callable(check.path)(org)
        return None if result in (None, True) else scrub(str(result), org.secrets)

    def create_scratch_org(self, config: dict[str, Any], timeout_s: float) -> ScratchOrgInfo:
        command = config.get("create_command")
        if command:  # lets a plan (and the tests) make creation slow or fail for real
            code, output = run_command(str(command), dict(os.environ), timeout_s, ())
            if code != 0:
                raise StepFailed(f"scratch org creation exited with status {code}", output)
        org_id = "00D" + uuid.uuid4().hex[:15].upper()
        instance_url = f"https://{org_id.lower()}.scratch.local"
        with self.db.session() as session:
            session.add(
                Org(org_id=org_id, org_type="scratch", is_scratch=True, instance_url=instance_url)
            )
        return ScratchOrgInfo(org_id=org_id, instance_url=instance_url)

    def delete_scratch_org(self, org_id: str, timeout_s: float) -> None:
        with self.db.session() as session:
            org = session.scalar(select(Org).where(Org.org_id == org_id))
            if org is not None and not org.is_scratch:
                raise StepFailed(f"org {org_id} is not a scratch org; refusing to delete it")
            session.execute(delete(Org).where(Org.org_id == org_id))


def _looks_like_callable(path: str) -> bool:
    """Checks have no kind: ``pkg.module:fn`` is a callable, anything else a command."""
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    parts = [*module.split("."), name]
    return bool(module) and all(p.isidentifier() for p in parts)


def _as_outcome(result: Any, org: OrgRef) -> StepOutcome:
    if isinstance(result, StepOutcome):
        result.output = scrub(result.output, org.secrets) or ""
        result.message = scrub(result.message, org.secrets)
        return result
    if result is None:
        return StepOutcome("ok")
    if isinstance(result, str) and result in STEP_STATUSES:
        return StepOutcome(result)
    return StepOutcome("ok", None, scrub(str(result), org.secrets) or "")
