""":class:`LocalOrgBackend`: real, not a mock. Orgs are rows in ``orgs``; a step whose
``kind`` is ``command`` is a shell command (:mod:`.commands`); any other step
(``task``/``flow``) is a Python callable named ``package.module:function``. A CumulusCI
backend implements the same four methods (see docs/INSTALLS.md)."""

from __future__ import annotations

import os
import traceback
import uuid
from typing import Any

from sqlalchemy import delete, select

from schema.engine import Database
from schema.orgs import Org
from tickwork.scrub import scrub
from tickwork.settings import Settings
from workers.installs.backends.commands import run_command
from workers.installs.backends.loader import import_callable
from workers.installs.backends.protocol import (
    STEP_STATUSES,
    BackendError,
    OrgRef,
    OutputSink,
    ScratchOrgInfo,
    StepFailed,
    StepOutcome,
    StepSpec,
)


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
