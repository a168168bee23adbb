"""Asking for a run of a scheduled job from a service: ``request_run``.

A service process does not import the workers' job modules, so it records the run (with
its arguments and an optional idempotency key) and the scheduler's outbox sends it
(docs/RUN_LIFECYCLE.md: at the next tick, within about a minute in production). The
same idempotency key again returns the run the first request recorded — a retried HTTP
call or a double click queues one run. Keys are shared with ``tickwork jobs trigger
--idempotency-key`` and the admin API's, per job. The arguments are checked against the
job's signature by the worker that receives the message (a bad one fails the run with
the reason); the admin API checks them before anything is queued.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import CLIENT_KEY_PREFIX, JobRun
from tickwork.errors import ValidationError


def request_run(
    db: Database,
    job_name: str,
    *,
    kwargs: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Record a run now of ``job_name`` for the outbox to send; its run id (the earlier
    run's, when ``idempotency_key`` was used before for this job)."""
    if not isinstance(job_name, str) or not 1 <= len(job_name) <= 100:
        raise ValidationError("job_name: 1 to 100 characters")
    arguments = dict(kwargs or {})
    if not all(isinstance(k, str) and k.isidentifier() for k in arguments):
        raise ValidationError("kwargs: keys must be parameter names")
    if "run_id" in arguments:
        raise ValidationError("kwargs: 'run_id' is reserved for tickwork")
    try:
        json.dumps(arguments, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"kwargs: not JSON: {exc}") from None
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 150:
        raise ValidationError("idempotency_key: 1 to 150 characters")
    key = None if idempotency_key is None else CLIENT_KEY_PREFIX + idempotency_key
    with db.session() as session:
        insert = (postgresql.insert if db.is_postgresql else sqlite.insert)(JobRun)
        run_id = session.execute(
            insert.values(
                job_name=job_name,
                entry="",
                trigger="manual",
                status="queued",
                queued_at=utcnow(),
                kwargs=arguments or None,
                idempotency_key=key,
            )
            .on_conflict_do_nothing()
            .returning(JobRun.id)
        ).scalar_one_or_none()
        if run_id is None:
            run_id = session.scalars(
                select(JobRun.id).where(JobRun.job_name == job_name, JobRun.idempotency_key == key)
            ).one()
        return int(run_id)
