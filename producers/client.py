"""The client services call to start install work; works on RabbitMQ and in-process.

``create_install_job`` applies MetaDeploy's rules inside one transaction and either
returns the new job's id or raises an :class:`InstallRuleError` subclass naming the
rule that failed — with nothing written. Messages are validated by their contract
before they are sent (and again when a worker receives them).

    client = InstallClient.from_settings(load_settings())   # RabbitMQ: its own sender broker
    job_id = client.create_install_job(plan_id=3, org_id="00D...", user_id=7, steps=[11, 12])
    client.cancel_job(job_id)
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import dramatiq
from sqlalchemy import exists, func, select, text, update

from schema.base import utcnow
from schema.catalog import Plan, PreflightCheck, Step
from schema.engine import Database
from schema.identity import OAuthToken, User
from schema.installs import (
    JOB_CANCELED,
    Job,
    PreflightResult,
    never_run_step_ids,
    optional_step_ids,
    preflight_has_errors,
    preflight_is_ready,
)
from schema.orgs import ScratchOrg
from tickwork.contracts import (
    Contract,
    CreateScratchOrg,
    DeleteScratchOrg,
    EnqueueInstallJob,
    Preflight,
    UpdateAllTranslations,
)
from tickwork.errors import ServiceUnavailableError, ValidationError
from tickwork.events import emit
from tickwork.publish import publish, sender_broker
from tickwork.settings import Settings

logger = logging.getLogger(__name__)


# --- typed errors: callers catch by meaning; ``rule`` names the rule for an API ----------
class InstallRuleError(ValidationError):
    """A request broke one of the install rules; nothing was written."""

    rule = "valid_request"


class InvalidRequest(InstallRuleError):
    rule = "valid_request"


class PlanNotFound(InstallRuleError):
    rule = "plan_exists"


class UserNotFound(InstallRuleError):
    rule = "user_exists"


class NoTokens(InstallRuleError):
    rule = "user_has_tokens"


class UnknownSteps(InstallRuleError):
    rule = "steps_belong_to_plan"


class RequiredStepsMissing(InstallRuleError):
    rule = "required_steps_selected"


class PreflightRequired(InstallRuleError):
    rule = "valid_preflight"


class OrgBusy(InstallRuleError):
    rule = "one_started_job_per_org"


class QueueFull(InstallRuleError):
    rule = "max_queue_length"


class JobNotFound(InstallRuleError):
    rule = "job_exists"


class JobAlreadyFinished(InstallRuleError):
    rule = "job_not_finished"


class ScratchOrgNotFound(InstallRuleError):
    rule = "scratch_org_exists"


def queue_length(broker: dramatiq.Broker, queue_name: str) -> int:
    """Messages waiting in ``queue_name`` (ready ones; RabbitMQ counts via passive declare)."""
    from dramatiq.brokers.stub import StubBroker

    if isinstance(broker, StubBroker):
        queue = broker.queues.get(queue_name)
        return 0 if queue is None else int(queue.qsize())
    counts = broker.get_queue_message_counts(queue_name)  # type: ignore[attr-defined]
    ready, _delayed, _dead = counts
    return int(ready)


class InstallClient:
    def __init__(self, db: Database, broker: dramatiq.Broker, settings: Settings) -> None:
        self.db = db
        self.broker = broker
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> InstallClient:
        """A client with its own database handle and a sender broker (a service's process;
        RabbitMQ only: in the embedded mode, pass the running system's broker)."""
        broker = sender_broker(settings)  # first: it refuses the embedded mode
        return cls(Database(settings), broker, settings)

    def publish(self, payload: Contract, delay_ms: int | None = None) -> str:
        """Send ``payload`` (a contract of the catalogue) to its actor; the message id."""
        return publish(self.broker, self.settings, payload, delay_ms)

    # --- install jobs --------------------------------------------------------------
    def create_install_job(
        self, *, plan_id: int, org_id: str, user_id: int, steps: list[int]
    ) -> int:
        """Create an install job and enqueue it; the job id, or an InstallRuleError."""
        _check_id("plan_id", plan_id)
        _check_id("user_id", user_id)
        _check_org_id(org_id)
        if not isinstance(steps, list) or not steps:
            raise InvalidRequest("steps: select at least one step (a list of step ids)")
        for step_id in steps:
            _check_id("steps[]", step_id)
        if len(set(steps)) != len(steps):
            raise InvalidRequest(f"steps: a step is selected twice ({steps})")
        with self.db.session() as session:
            self._lock_org(session, org_id)
            if session.get(Plan, plan_id) is None:
                raise PlanNotFound(f"plan {plan_id} does not exist")
            self._check_user(session, user_id)
            plan_steps = list(
                session.scalars(select(Step).where(Step.plan_id == plan_id).order_by(Step.order))
            )
            known = {s.id for s in plan_steps}
            unknown = sorted(set(steps) - known)
            if unknown:
                raise UnknownSteps(f"steps {unknown} are not steps of plan {plan_id}")
            preflight = self._check_preflight(session, plan_id, org_id, user_id)
            results = preflight.results if preflight is not None else {}
            optional = optional_step_ids(results)  # MetaDeploy's per-step preflight rules
            missing = [
                s
                for s in plan_steps
                if s.is_required and s.id not in steps and s.id not in optional
            ]
            if missing:
                names = ", ".join(f"{s.id} ({s.name})" for s in missing)
                raise RequiredStepsMissing(f"required steps are not selected: {names}")
            never_run = never_run_step_ids(results)
            busy = session.scalar(
                select(Job.id)
                .where(Job.org_id == org_id, Job.status.in_(("created", "started")))
                .limit(1)
            )
            if busy is not None:
                raise OrgBusy(f"org {org_id} already has an install job in progress (job {busy})")
            job = Job(
                plan_id=plan_id,
                org_id=org_id,
                user_id=user_id,
                steps=[s.id for s in plan_steps if s.id in set(steps) and s.id not in never_run],
                status="created",
            )
            session.add(job)
            session.flush()
            job_id = job.id
        try:
            self.publish(EnqueueInstallJob(job_id=job_id))
        except Exception:
            # Committed first on purpose: the enqueuer's minute sweep picks it up.
            logger.warning("job %s created; immediate enqueue failed", job_id, exc_info=True)
        return job_id

    def cancel_job(self, job_id: int) -> str:
        """Cancel now if it has not started ("canceled"); else ask run_flows to stop before
        its next step ("cancel requested")."""
        return cancel_job(self.db, self.settings, job_id)

    # --- preflights ------------------------------------------------------------------
    def request_preflight(self, *, plan_id: int, org_id: str, user_id: int) -> int:
        """Queue a preflight of ``plan_id`` against the org; returns the preflight id."""
        _check_id("plan_id", plan_id)
        _check_id("user_id", user_id)
        _check_org_id(org_id)
        with self.db.session() as session:
            if session.get(Plan, plan_id) is None:
                raise PlanNotFound(f"plan {plan_id} does not exist")
            self._check_user(session, user_id)
            preflight = PreflightResult(
                org_id=org_id, user_id=user_id, plan_id=plan_id, status="started"
            )
            session.add(preflight)
            session.flush()
            preflight_id = preflight.id
        try:
            message_id = self.publish(Preflight(preflight_id=preflight_id))
        except Exception as exc:
            self._mark_unsent(PreflightResult, preflight_id, exc)
            raise ServiceUnavailableError(f"could not queue the preflight: {exc}") from exc
        with self.db.session() as session:
            session.execute(
                update(PreflightResult)
                .where(PreflightResult.id == preflight_id)
                .values(message_id=message_id)
            )
        return preflight_id

    # --- scratch orgs -------------------------------------------------------------------
    def request_scratch_org(
        self,
        *,
        plan_id: int,
        email: str,
        user_id: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> str:
        """Queue a scratch org for ``plan_id``; returns the request's uuid."""
        _check_id("plan_id", plan_id)
        if user_id is not None:
            _check_id("user_id", user_id)
        if not isinstance(email, str) or "@" not in email or len(email) > 255 or " " in email:
            raise InvalidRequest(f"email: {email!r} is not an e-mail address")
        if config is not None and not isinstance(config, dict):
            raise InvalidRequest("config: must be a JSON object")
        waiting = queue_length(self.broker, self.settings.queue("long"))
        if waiting > self.settings.max_queue_length:
            raise QueueFull(
                f"too many installations are waiting ({waiting} > "
                f"{self.settings.max_queue_length}); please try again in a few minutes"
            )
        request_uuid = str(uuid.uuid4())
        with self.db.session() as session:
            if session.get(Plan, plan_id) is None:
                raise PlanNotFound(f"plan {plan_id} does not exist")
            if user_id is not None and session.get(User, user_id) is None:
                raise UserNotFound(f"user {user_id} does not exist")
            session.add(
                ScratchOrg(
                    uuid=request_uuid,
                    plan_id=plan_id,
                    user_id=user_id,
                    email=email,
                    status="started",
                    config=dict(config or {}),
                    enqueued_at=utcnow(),
                )
            )
        try:
            self.publish(CreateScratchOrg(scratch_org_uuid=request_uuid))
        except Exception as exc:
            with self.db.session() as session:
                session.execute(
                    update(ScratchOrg)
                    .where(ScratchOrg.uuid == request_uuid)
                    .values(status="failed", email=None, exception=f"not queued: {exc}")
                )
            raise ServiceUnavailableError(f"could not queue the scratch org: {exc}") from exc
        return request_uuid

    def delete_scratch_org(self, scratch_org_uuid: str) -> None:
        with self.db.session() as session:
            found = session.scalar(select(exists().where(ScratchOrg.uuid == scratch_org_uuid)))
        if not found:
            raise ScratchOrgNotFound(f"scratch org {scratch_org_uuid!r} does not exist")
        self.publish(DeleteScratchOrg(scratch_org_uuid=scratch_org_uuid))

    # --- translations -----------------------------------------------------------------
    def update_translations(self, language: str | None = None) -> str:
        """Queue ``update_all_translations`` for one language (or all); the message id."""
        try:
            payload = UpdateAllTranslations(language=language)
        except Exception:
            raise InvalidRequest(f"language: {language!r} is not a language code") from None
        return self.publish(payload)

    # --- helpers ------------------------------------------------------------------------
    def _lock_org(self, session: Any, org_id: str) -> None:
        """Serialise job creation per org, so two requests cannot both pass the check."""
        if self.db.is_postgresql:
            session.execute(select(func.pg_advisory_xact_lock(func.hashtext(org_id))))
        else:  # SQLite: take the database's write lock before reading
            session.execute(text("UPDATE jobs SET id = id WHERE 0 = 1"))

    def _check_user(self, session: Any, user_id: int) -> None:
        if session.get(User, user_id) is None:
            raise UserNotFound(f"user {user_id} does not exist")
        has_token = session.scalar(select(exists().where(OAuthToken.user_id == user_id)))
        if not has_token:
            raise NoTokens(f"user {user_id} has no OAuth token: they must log in to the org again")

    def _check_preflight(
        self, session: Any, plan_id: int, org_id: str, user_id: int
    ) -> PreflightResult | None:
        """The ready preflight the install will use (None: the plan has no checks)."""
        has_checks = session.scalar(select(exists().where(PreflightCheck.plan_id == plan_id)))
        if not has_checks:
            return None
        latest = session.scalar(
            select(PreflightResult)
            .where(
                PreflightResult.plan_id == plan_id,
                PreflightResult.org_id == org_id,
                PreflightResult.user_id == user_id,
            )
            .order_by(PreflightResult.created_at.desc(), PreflightResult.id.desc())
            .limit(1)
        )
        if latest is None:
            raise PreflightRequired(f"plan {plan_id} has checks: run a preflight on {org_id} first")
        if not preflight_is_ready(latest, self.settings.preflight_lifetime_minutes, utcnow()):
            if latest.status == "started":
                why = "is still running"
            elif latest.status != "complete":
                why = f"ended {latest.status}"
            elif preflight_has_errors(latest.results):
                why = "found errors"
            else:
                why = "has expired or was used"
            raise PreflightRequired(
                f"the latest preflight ({latest.id}) {why}: run a new preflight first"
            )
        return latest  # type: ignore[no-any-return]

    def _mark_unsent(self, model: Any, row_id: int, exc: BaseException) -> None:
        with self.db.session() as session:
            session.execute(
                update(model)
                .where(model.id == row_id)
                .values(status="failed", exception=f"not queued: {exc}", is_valid=False)
            )


def cancel_job(db: Database, settings: Settings, job_id: int) -> str:
    """See :meth:`InstallClient.cancel_job` (also usable without a broker)."""
    _check_id("job_id", job_id)
    now = utcnow()
    with db.session() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise JobNotFound(f"job {job_id} does not exist")
        if job.status not in ("created", "started"):
            raise JobAlreadyFinished(f"job {job_id} is already {job.status}")
        job.cancel_requested_at = now
        job.edited_at = now
        outcome = "cancel requested"
        if job.status == "created":
            job.status = "canceled"
            job.canceled_at = now
            job.exception = JOB_CANCELED
            outcome = "canceled"
    if outcome == "canceled":
        emit(settings, "job", job_id, "canceled", message=JOB_CANCELED)
    return outcome


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidRequest(f"{name}: must be a positive integer id (got {value!r})")


def _check_org_id(org_id: object) -> None:
    if not isinstance(org_id, str) or not org_id.strip() or len(org_id) > 40:
        raise InvalidRequest(
            f"org_id: must be a non-empty string of at most 40 characters (got {org_id!r})"
        )
