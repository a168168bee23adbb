"""tickwork's storage: typed SQLAlchemy 2.0 models, Alembic migrations, engine setup.

Nothing here imports from ``workers`` or ``producers``: data flows one way.
"""

from schema.audit import AuditEntry
from schema.base import Base
from schema.catalog import Plan, PreflightCheck, Product, Step, Translation, Version
from schema.identity import (
    ApiToken,
    DeviceCode,
    OAuthToken,
    RefreshToken,
    Session,
    User,
    WebauthnChallenge,
)
from schema.installs import Job, JobStepResult, PreflightResult
from schema.messaging import DeadLetter
from schema.orgs import Org, ScratchOrg
from schema.scheduling import JobRun, ScheduledJobConfig, SchedulerState
from schema.sync import RemoteResource, SyncCursor

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "DeadLetter",
    "DeviceCode",
    "Job",
    "JobRun",
    "JobStepResult",
    "OAuthToken",
    "Org",
    "Plan",
    "PreflightCheck",
    "PreflightResult",
    "Product",
    "RefreshToken",
    "RemoteResource",
    "ScheduledJobConfig",
    "SchedulerState",
    "ScratchOrg",
    "Session",
    "Step",
    "SyncCursor",
    "Translation",
    "User",
    "Version",
    "WebauthnChallenge",
]
