"""The admin API: jobs, runs, controls, hold/release, dead letters, health, metrics, and
the web page. Every ``/api`` route needs ``Authorization: Bearer <token>`` and declares
the scope it needs (``auth.require_scope``): ``viewer`` reads, ``operator`` runs and
controls runs, ``admin`` changes schedules, purges and manages tokens. Every change is
written to the audit log with the token's name as its actor.

It reuses what the CLI uses (admin/job_status.py, workers/scheduler/control.py), so
the page, the API and ``tickwork jobs`` can never disagree.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Annotated, Any

import dramatiq
from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import StatementError

from admin.api import auth, dead_letters, input_checks, models
from admin.api.auth import Caller, require_scope
from admin.job_status import job_statuses, recent_failures, run_history
from admin.run_handoff import runs_broker
from schema.audit import audit_entries
from schema.engine import Database
from schema.scheduling import JobRun, SchedulerState
from tickwork.errors import (
    JobBusyError,
    NoRunningSystemError,
    RunStateError,
    ScheduleError,
    UnknownJobError,
    UnknownRunError,
    UnstorableInputError,
    ValidationError,
)
from tickwork.settings import Settings
from workers.metrics.exposition import render_metrics
from workers.registry import get_job
from workers.runtime import Runtime
from workers.scheduler import control, workflows

WEB = FilePath(__file__).resolve().parent.parent / "web"
JobName = Annotated[str, "a registered job's name"]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Responses = dict[int | str, dict[str, Any]]
NOT_AUTHORIZED: Responses = {
    401: {"model": models.Problem, "description": "no or bad token"},
    403: {"model": models.Problem, "description": "the token's scope is too low"},
}
NOT_FOUND: Responses = {404: {"model": models.Problem, "description": "no such job"}}
NO_RUN: Responses = {
    404: {"model": models.Problem, "description": "no such run"},
    409: {"model": models.Problem, "description": "the run is not in a state for this"},
}
# The scope each route declares (a test walks app.routes: none may lack one).
Viewer = Annotated[Caller, Depends(require_scope("viewer"))]
Operator = Annotated[Caller, Depends(require_scope("operator"))]
Admin = Annotated[Caller, Depends(require_scope("admin"))]
NO_DEAD_LETTER: Responses = {
    404: {"model": models.Problem, "description": "no such letter"},
    409: {"model": models.Problem, "description": "not a message that can be sent again"},
}
BAD_OVERRIDE: Responses = {422: {"model": models.Problem, "description": "bad override"}}
BAD_BODY: Responses = {400: {"model": models.Problem, "description": "body is not JSON"}}


def create_app(
    settings: Settings, db: Database, broker: dramatiq.Broker, *, workers_in_process: bool = True
) -> FastAPI:
    """The admin API and page. ``workers_in_process`` False (``tickwork api``): in the
    embedded mode, runs are recorded for the running ``tickwork run`` to send."""
    served = Runtime(settings=settings, db=db, broker=broker)  # what /metrics reports on

    def runs_via() -> dramatiq.Broker | None:
        return broker if workers_in_process else runs_broker(settings, broker)

    app = FastAPI(
        title="tickwork admin API",
        version="1",
        description="Operate tickwork's jobs: list, history, run now, enable/disable, "
        "schedule overrides, hold/release, dead letters.",
    )

    app.state.tickwork_db = db
    app.state.tickwork_settings = settings
    api = APIRouter(
        prefix="/api", dependencies=[Depends(auth.authenticated)], responses=NOT_AUTHORIZED
    )

    @app.exception_handler(UnknownJobError)
    async def unknown_job(request: Request, exc: UnknownJobError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(JobBusyError)
    async def busy(request: Request, exc: JobBusyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(NoRunningSystemError)
    async def nobody_runs_it(request: Request, exc: NoRunningSystemError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(ValidationError)
    async def invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ScheduleError)
    async def bad_schedule(request: Request, exc: ScheduleError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    # Hostile input (issue 20): refused with a 422 that names it, never a 500.
    app.add_middleware(input_checks.HostileInputMiddleware)
    app.add_exception_handler(RequestValidationError, input_checks.validation_error)
    app.add_exception_handler(UnstorableInputError, input_checks.unstorable)
    app.add_exception_handler(StatementError, input_checks.database_error)

    def job_out(name: str) -> models.Job:
        get_job(name)
        (status,) = [s for s in job_statuses(db) if s.name == name]
        return models.Job.model_validate(status, from_attributes=True)

    @api.get("/jobs", response_model=list[models.Job], summary="Every job and its state")
    def list_jobs(_: Viewer) -> list[models.Job]:
        return [models.Job.model_validate(s, from_attributes=True) for s in job_statuses(db)]

    @api.get("/jobs/{name}", response_model=models.Job, responses=NOT_FOUND)
    def one_job(name: JobName, _: Viewer) -> models.Job:
        return job_out(name)

    @api.get("/jobs/{name}/runs", response_model=list[models.Run], responses=NOT_FOUND)
    def runs(
        name: JobName,
        _: Viewer,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        failures: bool = False,
    ) -> list[models.Run]:
        return [models.Run.model_validate(r) for r in run_history(db, name, limit, failures)]

    @api.post(
        "/jobs/{name}/trigger",
        status_code=202,
        response_model=models.Triggered,
        responses={
            **NOT_FOUND,
            409: {"model": models.Problem, "description": "a run of the job is going"},
            503: {"model": models.Problem, "description": "nothing would run it (embedded)"},
        },
    )
    def trigger(
        name: JobName,
        caller: Operator,
        force: Annotated[bool, Query(description="run alongside a run that is going")] = False,
        body: Annotated[models.Trigger | None, Body()] = None,
        idempotency_key: Annotated[
            str | None,
            Header(
                min_length=1,
                max_length=150,
                description="The same key again returns the run the first request queued.",
            ),
        ] = None,
    ) -> models.Triggered:
        """Run the job now (no jitter), with ``args`` checked against the job's signature
        first (422 naming the field). Refused (409) while a run of it is queued or
        running, unless ``force``. An idempotency key (body or ``Idempotency-Key``
        header) makes a retried request return the same run."""
        request = body or models.Trigger()
        run_id = control.trigger(
            db,
            runs_via(),
            name,
            force=force,
            kwargs=request.args,
            idempotency_key=request.idempotency_key or idempotency_key,
            actor=auth.actor(caller),
        )
        return models.Triggered(run_id=run_id)

    @api.post(
        "/jobs/{name}/backfill",
        status_code=202,
        response_model=models.Backfilled,
        responses={
            **NOT_FOUND,
            **BAD_BODY,
            422: {"model": models.Problem, "description": "bad range, or too many slots"},
            503: {"model": models.Problem, "description": "nothing would run it (embedded)"},
        },
    )
    def backfill(name: JobName, body: models.Backfill, caller: Operator) -> models.Backfilled:
        """Queue one run per slot of the job's schedule due in (start, end] that has no
        run yet (trigger ``backfill``); more than ``max`` (default
        TICKWORK_BACKFILL_MAX_RUNS) is refused before anything is queued."""
        get_job(name)
        run_ids = workflows.backfill(
            db,
            runs_via(),
            name,
            body.start,
            body.end,
            max_runs=body.max,
            entry=body.entry,
            actor=auth.actor(caller),
        )
        return models.Backfilled(run_ids=run_ids)

    @api.get(
        "/runs/{run_id}",
        response_model=models.RunWithChain,
        responses=NO_RUN,
    )
    def one_run(run_id: RunId, _: Viewer) -> models.RunWithChain:
        """A run with its chain: the run that queued it and the runs it queued."""
        with db.session() as session:
            found = session.get(JobRun, run_id)
        if found is None:
            raise HTTPException(404, f"no run {run_id}")
        parent, children = workflows.chain_of(db, run_id)
        return models.RunWithChain.model_validate(
            {
                **models.Run.model_validate(found).model_dump(),
                "parent": models.Run.model_validate(parent) if parent else None,
                "children": [models.Run.model_validate(c) for c in children],
            }
        )

    @api.post("/jobs/{name}/enable", response_model=models.Job, responses=NOT_FOUND)
    def enable(name: JobName, caller: Operator) -> models.Job:
        control.set_enabled(db, name, True, actor=auth.actor(caller))
        return job_out(name)

    @api.post("/jobs/{name}/disable", response_model=models.Job, responses=NOT_FOUND)
    def disable(name: JobName, caller: Operator) -> models.Job:
        control.set_enabled(db, name, False, actor=auth.actor(caller))
        return job_out(name)

    @api.put(
        "/jobs/{name}/schedule",
        response_model=models.Job,
        responses={**NOT_FOUND, **BAD_OVERRIDE, **BAD_BODY},
    )
    def set_schedule(name: JobName, body: models.ScheduleOverride, caller: Admin) -> models.Job:
        control.set_schedule_override(
            db, name, times=body.times, interval=body.interval, actor=auth.actor(caller)
        )
        return job_out(name)

    @api.put(
        "/jobs/{name}/notify-on-success",
        response_model=models.Job,
        responses={**NOT_FOUND, **BAD_BODY},
    )
    def notify(name: JobName, body: models.NotifyOnSuccess, caller: Admin) -> models.Job:
        control.set_notify_on_success(db, name, body.enabled, actor=auth.actor(caller))
        return job_out(name)

    @api.post(
        "/runs/{run_id}/cancel",
        response_model=models.CancelOutcome,
        responses=NO_RUN,
        summary="Cancel a queued or running run",
    )
    def cancel(run_id: RunId, caller: Operator) -> models.CancelOutcome:
        """A queued run is canceled at once; a running one stops at its job's next check
        of ``ctx.cancelled`` and is recorded canceled however it ends."""
        with run_errors():
            status = control.cancel_run(db, run_id, actor=auth.actor(caller))
        return models.CancelOutcome(run_id=run_id, status=status)

    @api.post(
        "/runs/{run_id}/retry",
        status_code=202,
        response_model=models.Triggered,
        responses=NO_RUN,
        summary="Retry a failed run",
    )
    def retry(run_id: RunId, caller: Operator) -> models.Triggered:
        """A new run of the failed run's job, linked to it (``retry_of``); 409 unless the
        run failed."""
        with run_errors():
            control.check_retryable(db, run_id)  # before runs_via() may say nothing runs
            new_id = control.retry_run(db, runs_via(), run_id, actor=auth.actor(caller))
        return models.Triggered(run_id=new_id)

    @api.get(
        "/failures",
        response_model=list[models.Run],
        responses=NOT_FOUND,
        summary="Recent failures of every job",
    )
    def failures(
        _: Viewer,
        job: Annotated[str | None, Query(max_length=100)] = None,
        since: Annotated[dt.datetime | None, Query(description="finished at or after")] = None,
        until: Annotated[dt.datetime | None, Query(description="finished before")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[models.Run]:
        rows = recent_failures(
            db, job_name=job or None, since=_aware(since), until=_aware(until), limit=limit
        )
        return [models.Run.model_validate(r) for r in rows]

    @api.get("/audit", response_model=list[models.AuditEntry], summary="Who changed what")
    def audit(
        _: Viewer,
        actor: Annotated[str | None, Query(max_length=255)] = None,
        action: Annotated[str | None, Query(max_length=40)] = None,
        target: Annotated[str | None, Query(max_length=255)] = None,
        since: Annotated[dt.datetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[models.AuditEntry]:
        with db.session() as session:
            rows = audit_entries(
                session,
                limit=limit,
                actor=actor,
                action=action,
                target=target,
                since=_aware(since),
            )
            return [models.AuditEntry.model_validate(r) for r in rows]

    @api.get("/me", response_model=models.Me, summary="The calling token and its scope")
    def me(caller: Viewer) -> models.Me:
        return models.Me(name=caller.name, scope=caller.scope)

    @api.get("/tokens", response_model=list[models.Token])
    def tokens(_: Admin) -> list[models.Token]:
        days = settings.api_token_expire_after_days
        return [
            models.Token(
                id=t.id,
                name=t.name,
                prefix=t.prefix,
                scope=t.scope,
                created_at=t.created_at,
                expires_at=auth.expires_at(t, days),
                last_used_at=t.last_used_at,
            )
            for t in auth.list_tokens(db)
        ]

    @api.post("/tokens", status_code=201, response_model=models.CreatedToken, responses=BAD_BODY)
    def new_token(body: models.NewToken, caller: Admin) -> models.CreatedToken:
        try:
            made = auth.create_token(
                db,
                body.name,
                scope=body.scope,
                expires_in_days=body.expires_in_days,
                actor=auth.actor(caller),
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return models.CreatedToken(
            id=made.id,
            name=made.name,
            scope=made.scope,
            expires_at=made.expires_at,
            token=made.token,
        )

    @api.delete(
        "/tokens/{token_id}",
        response_model=models.Count,
        responses={404: {"model": models.Problem, "description": "no such token"}},
    )
    def revoke_token(
        token_id: Annotated[int, Path(ge=1, le=2**63 - 1)], caller: Admin
    ) -> models.Count:
        if not auth.revoke_token(db, token_id, actor=auth.actor(caller)):
            raise HTTPException(404, f"no token with id {token_id}")
        return models.Count(count=1)

    @api.post("/hold", response_model=models.Held, summary="Hold all jobs")
    def hold(caller: Operator) -> models.Held:
        control.hold(db, actor=auth.actor(caller))
        return models.Held(held=True)

    @api.post(
        "/release", response_model=models.Released, summary="Release held jobs", responses=BAD_BODY
    )
    def release(body: models.Release, caller: Operator) -> models.Released:
        queued = control.release(db, runs_via(), body.mode, actor=auth.actor(caller))
        return models.Released(queued=queued)

    @api.get("/dead-letters", response_model=list[models.DeadLetter])
    def dead(
        _: Viewer,
        queue: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[models.DeadLetter]:
        rows = dead_letters.list_dead_letters(db, queue, limit, settings=settings, broker=broker)
        return [models.DeadLetter.model_validate(r) for r in rows]

    @api.post(
        "/dead-letters/{dead_letter_id}/replay",
        response_model=models.Count,
        responses=NO_DEAD_LETTER,
    )
    def replay_one(
        dead_letter_id: Annotated[int, Path(ge=1, le=2**31 - 1)], caller: Operator
    ) -> models.Count:
        try:
            replayed = dead_letters.replay(db, broker, dead_letter_id, actor=auth.actor(caller))
        except ValidationError as exc:
            raise HTTPException(409, str(exc)) from None
        if not replayed:
            raise HTTPException(404, f"no dead letter {dead_letter_id}")
        return models.Count(count=1)

    @api.post("/dead-letters/replay", response_model=models.Count, summary="Replay all")
    def replay_all(
        caller: Operator, queue: Annotated[str | None, Query(max_length=200)] = None
    ) -> models.Count:
        count = dead_letters.replay_all(
            db, broker, queue, settings=settings, actor=auth.actor(caller)
        )
        return models.Count(count=count)

    @api.delete("/dead-letters", response_model=models.Count, summary="Purge")
    def purge(
        caller: Admin, queue: Annotated[str | None, Query(max_length=200)] = None
    ) -> models.Count:
        count = dead_letters.purge(
            db, queue, settings=settings, broker=broker, actor=auth.actor(caller)
        )
        return models.Count(count=count)

    app.include_router(api)

    @app.get("/health", response_model=models.Health, tags=["health"])
    def health() -> models.Health:
        try:
            with db.session() as session:
                session.execute(text("SELECT 1"))
                state = session.get(SchedulerState, 1)
        except Exception as exc:
            return models.Health(status="degraded", database=type(exc).__name__, held=None)
        return models.Health(status="ok", database="ok", held=bool(state and state.held))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = render_metrics(served)
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((WEB / "templates" / "index.html").read_text())

    @app.get("/app.js", include_in_schema=False)
    def script() -> Response:
        return Response((WEB / "app.js").read_text(), media_type="text/javascript")

    return app


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """A query's time, UTC when it names no zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


@contextlib.contextmanager
def run_errors() -> Iterator[None]:
    """A run that does not exist is 404; one not in a state for the request, 409 (kept in
    the routes, beside the app-wide exception handlers)."""
    try:
        yield
    except UnknownRunError as exc:
        raise HTTPException(404, str(exc)) from None
    except RunStateError as exc:
        raise HTTPException(409, str(exc)) from None
