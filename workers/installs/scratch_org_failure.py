"""MetaDeploy's ``fail_job`` for scratch orgs: an install or a preflight that fails on a
scratch org marks the org's request ``failed`` (with the reason) and queues
``delete_scratch_org``, so a broken scratch org is not left running for its whole life.

Only a request that finished creating its org (``complete``) is failed here: while
``create_scratch_org`` still runs the org's first preflight, it fails (and deletes) the
org itself.
"""

from __future__ import annotations

import logging

import dramatiq
from sqlalchemy import select

from schema.base import utcnow
from schema.engine import Database
from schema.orgs import ScratchOrg
from tickwork.contracts import DeleteScratchOrg
from tickwork.events import emit
from tickwork.publish import publish
from tickwork.settings import Settings

logger = logging.getLogger(__name__)


def fail_scratch_org(
    db: Database, settings: Settings, broker: dramatiq.Broker | None, org_id: str, reason: str
) -> str | None:
    """Fail and queue the deletion of ``org_id``'s scratch org request, if it has one;
    the request's uuid (None: not a scratch org, or already failed/deleted)."""
    with db.session() as session:
        request = session.scalar(
            select(ScratchOrg)
            .where(ScratchOrg.org_id == org_id, ScratchOrg.status == "complete")
            .with_for_update()
        )
        if request is None:
            return None
        request.status = "failed"
        request.exception = reason
        request.updated_at = utcnow()
        uuid = request.uuid
    emit(settings, "org", uuid, "failed", message=reason.splitlines()[-1:])
    if broker is None:
        logger.error("scratch org %s failed but no broker to queue its deletion", uuid)
        return uuid
    try:
        publish(broker, settings, DeleteScratchOrg(scratch_org_uuid=uuid))
    except Exception:  # the org stays failed; expired-org cleanup or an operator deletes it
        logger.exception("could not queue delete_scratch_org for %s", uuid)
    return uuid
