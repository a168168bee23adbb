"""``create_scratch_org`` and ``delete_scratch_org``.

Creating: the backend makes the org (bounded wait, transient errors retried), the
requester's e-mail is wiped as soon as it has been used, the plan's preflight runs
against the new org, and when every step of the plan is required the install job is
created and enqueued (the user had no choice to make). Any failure marks the request
``failed`` with a scrubbed reason and queues ``delete_scratch_org``, so no org is left
behind. A redelivery that finds an org already made by a dead worker does the same.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from typing import Any

import dramatiq
from dramatiq.middleware import Shutdown, TimeLimitExceeded
from sqlalchemy import select

from schema.base import utcnow
from schema.catalog import Step
from schema.engine import Database
from schema.installs import Job, PreflightResult, never_run_step_ids, preflight_has_errors
from schema.orgs import ScratchOrg
from tickwork.contracts import DeleteScratchOrg, EnqueueInstallJob, Preflight
from tickwork.events import emit
from tickwork.publish import publish
from tickwork.scrub import scrub
from tickwork.settings import Settings
from workers.installs.backends.protocol import OrgBackend
from workers.installs.backends.retry import with_backoff
from workers.installs.preflight import run_preflight

logger = logging.getLogger(__name__)

INTERRUPTED = "The scratch org creation was interrupted. Please request a new scratch org."


class ScratchOrgInterrupted(Exception):
    """The previous delivery created an org and then its worker died."""


def create_scratch_org(
    db: Database,
    settings: Settings,
    broker: dramatiq.Broker,
    backend: OrgBackend,
    scratch_org_uuid: str,
) -> str:
    """Create the org for a request; returns the request's final status."""
    with db.session() as session:
        request = session.scalar(
            select(ScratchOrg).where(ScratchOrg.uuid == scratch_org_uuid).with_for_update()
        )
        if request is None:
            logger.warning("scratch org %s does not exist; message dropped", scratch_org_uuid)
            return "missing"
        if request.status != "started":
            return request.status
        interrupted = request.org_id is not None
        config: dict[str, Any] = dict(request.config or {})
        plan_id, user_id = request.plan_id, request.user_id
        config.setdefault("email", request.email)
    emit(settings, "org", scratch_org_uuid, "started")
    try:
        if interrupted:
            raise ScratchOrgInterrupted(INTERRUPTED)
        info = with_backoff(
            lambda: backend.create_scratch_org(config, settings.scratch_org_timeout_s),
            retries=settings.backend_retries,
            min_backoff_ms=settings.min_backoff_ms,
            max_backoff_ms=settings.max_backoff_ms,
        )
        days = int(config.get("duration_days", 1))
        with db.session() as session:
            request = session.scalar(select(ScratchOrg).where(ScratchOrg.uuid == scratch_org_uuid))
            assert request is not None
            request.org_id = info.org_id
            request.email = None  # used: the org exists; do not keep personal data
            request.expires_at = utcnow() + dt.timedelta(days=days)
            request.updated_at = utcnow()
            preflight = PreflightResult(org_id=info.org_id, user_id=user_id, plan_id=plan_id)
            session.add(preflight)
            session.flush()
            preflight_id = preflight.id
        status = run_preflight(db, settings, backend, Preflight(preflight_id=preflight_id))
        if status != "complete":
            raise RuntimeError(f"the preflight of the new scratch org ended {status}")
        job_id = _create_job_if_all_required(db, plan_id, user_id, info.org_id, preflight_id)
        if job_id is not None:
            publish(broker, settings, EnqueueInstallJob(job_id=job_id))
        with db.session() as session:
            request = session.scalar(select(ScratchOrg).where(ScratchOrg.uuid == scratch_org_uuid))
            assert request is not None
            request.status = "complete"
            request.updated_at = utcnow()
        emit(settings, "org", scratch_org_uuid, "completed", org_id=info.org_id, job_id=job_id)
        return "complete"
    except Shutdown:
        _fail(db, settings, broker, scratch_org_uuid, INTERRUPTED)
        return "failed"
    except TimeLimitExceeded:
        limit_s = settings.job_time_limit_s
        _fail(db, settings, broker, scratch_org_uuid, f"Exceeded the time limit of {limit_s} s.")
        return "failed"
    except Exception as exc:
        reason = (
            str(exc)
            if isinstance(exc, ScratchOrgInterrupted)
            else "".join(traceback.format_exception(exc, limit=20))
        )
        _fail(db, settings, broker, scratch_org_uuid, scrub(reason) or "")
        return "failed"


def _create_job_if_all_required(
    db: Database, plan_id: int, user_id: int | None, org_id: str, preflight_id: int
) -> int | None:
    with db.session() as session:
        steps = list(session.scalars(select(Step).where(Step.plan_id == plan_id)))
        preflight = session.get(PreflightResult, preflight_id)
        if not steps or not all(s.is_required for s in steps):
            return None
        if preflight is None or preflight_has_errors(preflight.results):
            return None
        never_run = never_run_step_ids(preflight.results)  # hidden or skipped by a check
        job = Job(
            plan_id=plan_id,
            user_id=user_id,
            org_id=org_id,
            steps=[s.id for s in sorted(steps, key=lambda s: s.order) if s.id not in never_run],
            status="created",
        )
        session.add(job)
        session.flush()
        return job.id


def _fail(
    db: Database, settings: Settings, broker: dramatiq.Broker, scratch_org_uuid: str, reason: str
) -> None:
    with db.session() as session:
        request = session.scalar(select(ScratchOrg).where(ScratchOrg.uuid == scratch_org_uuid))
        if request is None:
            return
        request.status = "failed"
        request.exception = reason
        request.email = None
        request.updated_at = utcnow()
    emit(settings, "org", scratch_org_uuid, "failed", message=reason.splitlines()[-1:])
    try:
        publish(broker, settings, DeleteScratchOrg(scratch_org_uuid=scratch_org_uuid))
    except Exception:
        logger.exception("could not queue delete_scratch_org for %s", scratch_org_uuid)


def delete_scratch_org(
    db: Database, settings: Settings, backend: OrgBackend, scratch_org_uuid: str
) -> str:
    """Delete the request's org; a failed request keeps its status (and its reason)."""
    with db.session() as session:
        request = session.scalar(select(ScratchOrg).where(ScratchOrg.uuid == scratch_org_uuid))
        if request is None:
            return "missing"
        if request.status == "deleted":
            return "deleted"
        org_id = request.org_id
    if org_id is not None:
        with_backoff(
            lambda: backend.delete_scratch_org(org_id, settings.scratch_org_timeout_s),
            retries=settings.backend_retries,
            min_backoff_ms=settings.min_backoff_ms,
            max_backoff_ms=settings.max_backoff_ms,
        )
    with db.session() as session:
        request = session.scalar(select(ScratchOrg).where(ScratchOrg.uuid == scratch_org_uuid))
        if request is None:
            return "missing"
        if request.status != "failed":
            request.status = "deleted"
        request.updated_at = utcnow()
        return request.status
