"""``preflight``: run a plan's checks against an org and store what each found.

A preflight that found errors is still a *finished* preflight (``complete``): the
errors are its result, and the UI shows them. Only a preflight that could not run
(the backend was unreachable after retries, or a check crashed) is ``failed``. A
result is valid for ``PREFLIGHT_LIFETIME_MINUTES``; ``expire_preflight_results`` and
the enqueuer invalidate it after that, or once it has been used.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import dramatiq
from dramatiq.middleware import Shutdown, TimeLimitExceeded
from sqlalchemy import select, update

from schema.base import utcnow
from schema.catalog import PreflightCheck
from schema.engine import Database
from schema.installs import PreflightResult
from tickwork.contracts import Preflight
from tickwork.events import emit
from tickwork.scrub import scrub
from tickwork.settings import Settings
from workers.installs.backends.protocol import OrgBackend, StepFailed, StepSpec
from workers.installs.backends.retry import with_backoff
from workers.installs.common import EVENT_STATUS, org_ref
from workers.installs.scratch_org_failure import fail_scratch_org

logger = logging.getLogger(__name__)


def run_preflight(
    db: Database,
    settings: Settings,
    backend: OrgBackend,
    payload: Preflight,
    broker: dramatiq.Broker | None = None,
) -> str:
    """Run the checks; returns the preflight's final status. A preflight that fails (could
    not run) on a scratch org fails the org and queues its deletion (``broker``)."""
    status = _run(db, settings, backend, payload)
    if status == "failed":
        with db.session() as session:
            row = session.get(PreflightResult, payload.preflight_id)
            org_id, exception = (row.org_id, row.exception) if row is not None else (None, None)
        if org_id is not None:
            reason = f"The preflight {payload.preflight_id} failed: {exception or ''}".strip()
            fail_scratch_org(db, settings, broker, org_id, reason)
    return status


def _run(db: Database, settings: Settings, backend: OrgBackend, payload: Preflight) -> str:
    preflight_id = payload.preflight_id
    with db.session() as session:
        preflight = session.get(PreflightResult, preflight_id, with_for_update=True)
        if preflight is None:
            logger.warning("preflight %s does not exist; message dropped", preflight_id)
            return "missing"
        if preflight.status != "started":
            return preflight.status  # a duplicate delivery of a finished preflight
        org = org_ref(session, preflight.org_id, preflight.user_id)
        checks = [
            StepSpec(id=c.id, name=c.name, kind="check", path=c.path)
            for c in session.scalars(
                select(PreflightCheck)
                .where(PreflightCheck.plan_id == preflight.plan_id)
                .order_by(PreflightCheck.order)
            )
        ]
        rows = session.scalars(
            select(PreflightCheck).where(PreflightCheck.plan_id == preflight.plan_id)
        ).all()
        actions = {c.id: c.action_on_fail for c in rows}
        check_steps = {c.id: c.step_id for c in rows}
    emit(settings, "preflight", preflight_id, "started")
    results: dict[str, Any] = {}
    try:
        for check in checks:
            try:
                failure = with_backoff(
                    lambda check=check: backend.run_check(  # type: ignore[misc]
                        org, check, settings.install_step_timeout_s
                    ),
                    retries=settings.backend_retries,
                    min_backoff_ms=settings.min_backoff_ms,
                    max_backoff_ms=settings.max_backoff_ms,
                )
            except StepFailed as exc:
                failure = scrub(str(exc), org.secrets)
            status = "ok" if failure is None else actions.get(check.id, "error")
            results[str(check.id)] = {
                "name": check.name,
                "status": status,
                "message": failure,
                "step_id": check_steps.get(check.id),  # MetaDeploy's results are per step
            }
        return _finish(db, settings, preflight_id, "complete", results, None)
    except Shutdown:
        return _finish(
            db, settings, preflight_id, "canceled", results, "interrupted by worker shutdown"
        )
    except TimeLimitExceeded:
        limit_s = settings.short_job_time_limit_s
        message = f"The preflight exceeded its time limit of {limit_s} s."
        return _finish(db, settings, preflight_id, "failed", results, message)
    except Exception as exc:
        text = "".join(traceback.format_exception(exc, limit=20))
        return _finish(db, settings, preflight_id, "failed", results, scrub(text, org.secrets))


def _finish(
    db: Database,
    settings: Settings,
    preflight_id: int,
    status: str,
    results: dict[str, Any],
    exception: str | None,
) -> str:
    with db.session() as session:
        changed = session.execute(
            update(PreflightResult)
            .where(PreflightResult.id == preflight_id, PreflightResult.status == "started")
            .values(
                status=status,
                results=results,
                exception=exception,
                is_valid=status == "complete",
                edited_at=utcnow(),
            )
        ).rowcount  # type: ignore[attr-defined]
    if changed:
        errors = sum(1 for r in results.values() if r["status"] == "error")
        emit(settings, "preflight", preflight_id, EVENT_STATUS[status], errors=errors)
    return status
