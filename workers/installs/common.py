"""Small pieces every install actor shares: the org credentials of a user and event
words. (The exact messages users see live with the models: schema.installs.)"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from schema.identity import OAuthToken
from workers.installs.backends.protocol import OrgRef

# Row status → event status (rows say "complete", events say "completed").
EVENT_STATUS = {
    "started": "started",
    "complete": "completed",
    "failed": "failed",
    "canceled": "canceled",
}


def org_ref(session: Session, org_id: str, user_id: int | None) -> OrgRef:
    """The org with the user's newest OAuth token (decrypted in memory only)."""
    token = None
    if user_id is not None:
        token = session.scalar(
            select(OAuthToken)
            .where(OAuthToken.user_id == user_id)
            .order_by(OAuthToken.created_at.desc(), OAuthToken.id.desc())
            .limit(1)
        )
    if token is None:
        return OrgRef(org_id=org_id)
    return OrgRef(org_id=org_id, instance_url=token.instance_url, access_token=token.access_token)
