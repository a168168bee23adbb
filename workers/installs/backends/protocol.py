"""The ``OrgBackend`` protocol: what an org backend does, and the types it speaks.

The actors only decide *what* runs and record outcomes; a backend decides *how*: run
one step or one preflight check against an org, create or delete a scratch org.
Errors are split by meaning, because the callers treat them differently:
:class:`StepFailed` (the step ran and failed: never retried, the job fails) and
:class:`TransientBackendError` (the backend could not be reached and *nothing was
done*: retried with backoff).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tickwork.errors import TickworkError

OutputSink = Callable[[str], None]


STEP_STATUSES = ("ok", "warn", "error", "skip")


class BackendError(TickworkError):
    """Base of what an org backend raises on purpose."""


class StepFailed(BackendError):
    """A step (or scratch-org operation) ran and failed; ``output`` is what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class StepCanceled(StepFailed):
    """A cancel stopped the step before it finished (a backend with ``cancels_mid_step``)."""


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
