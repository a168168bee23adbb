"""Binds the install actors to a broker (called once from ``workers.app.build_runtime``).

Each actor takes its typed payload (decoded once, by :class:`ContractMiddleware`) and
hands it to the module that does the work. Queues and limits follow MetaDeploy: installs and scratch
orgs on the long queue with ``JOB_TIME_LIMIT_S``; enqueuing and preflights on the
short queue with ``SHORT_JOB_TIME_LIMIT_S``. ``run_flows`` is never retried by Dramatiq
(installs are not idempotent); the others retry transient errors with backoff.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from sqlalchemy.exc import OperationalError

from tickwork import contracts, queues
from tickwork.errors import ValidationError
from tickwork.settings import Settings
from workers.installs.backends.loader import load_backend
from workers.installs.backends.protocol import OrgBackend
from workers.installs.backends.retry import is_transient
from workers.installs.enqueuer import enqueue_pending
from workers.installs.preflight import run_preflight
from workers.installs.run_flows import run_flows as run
from workers.installs.scratch_orgs import create_scratch_org as create
from workers.installs.scratch_orgs import delete_scratch_org as delete
from workers.installs.translations import update_all_translations as update
from workers.middleware.contracts import ContractMiddleware, current_payload
from workers.runtime import Runtime, get_runtime

_backends: dict[int, tuple[Runtime, OrgBackend]] = {}
_backends_lock = threading.Lock()


def backend_for(runtime: Runtime) -> OrgBackend:
    """One backend per runtime (process), built on first use."""
    with _backends_lock:
        entry = _backends.get(id(runtime))
        if entry is None or entry[0] is not runtime:
            entry = (runtime, load_backend(runtime.settings, runtime.db))
            _backends[id(runtime)] = entry
        return entry[1]


def _message_id() -> str:
    message = CurrentMessage.get_current_message()
    return message.message_id if message is not None else ""


def enqueue_install_job(**_: Any) -> None:  # the kwargs: ContractMiddleware decoded them
    payload = current_payload(contracts.EnqueueInstallJob)
    runtime = get_runtime()
    enqueue_pending(runtime.db, runtime.broker, runtime.settings, job_id=payload.job_id)


def run_flows(**_: Any) -> None:  # the kwargs: ContractMiddleware decoded them
    payload = current_payload(contracts.RunFlows)
    runtime = get_runtime()
    run(runtime.db, runtime.settings, backend_for(runtime), payload, _message_id(), runtime.broker)


def preflight(**_: Any) -> None:  # the kwargs: ContractMiddleware decoded them
    payload = current_payload(contracts.Preflight)
    runtime = get_runtime()
    run_preflight(runtime.db, runtime.settings, backend_for(runtime), payload, runtime.broker)


def create_scratch_org(**_: Any) -> None:  # the kwargs: ContractMiddleware decoded them
    payload = current_payload(contracts.CreateScratchOrg)
    runtime = get_runtime()
    create(
        runtime.db, runtime.settings, runtime.broker, backend_for(runtime), payload.scratch_org_uuid
    )


def delete_scratch_org(**_: Any) -> None:  # the kwargs: ContractMiddleware decoded them
    payload = current_payload(contracts.DeleteScratchOrg)
    runtime = get_runtime()
    delete(runtime.db, runtime.settings, backend_for(runtime), payload.scratch_org_uuid)


def update_all_translations(**_: Any) -> None:  # the kwargs: ContractMiddleware decoded them
    payload = current_payload(contracts.UpdateAllTranslations)
    update(get_runtime().db, payload.language)


def bind_install_actors(
    broker: dramatiq.Broker, settings: Settings
) -> dict[str, dramatiq.Actor[Any, Any]]:
    """Declare the install actors on ``broker`` (and the contract check they rely on)."""
    if not any(isinstance(m, ContractMiddleware) for m in broker.middleware):
        broker.add_middleware(ContractMiddleware(get_runtime))
    long_limit_ms = settings.job_time_limit_s * 1000
    short_limit_ms = settings.short_job_time_limit_s * 1000

    def transient(retries: int, exc: BaseException) -> bool:
        # An unreachable backend, or the database restarting (OperationalError).
        passing = is_transient(exc) or isinstance(exc, OperationalError)
        return passing and retries < settings.max_retries

    table: list[tuple[str, Any, str, int, dict[str, Any]]] = [
        (contracts.ENQUEUE_INSTALL_JOB, enqueue_install_job, queues.SHORT, short_limit_ms, {}),
        (contracts.RUN_FLOWS, run_flows, queues.LONG, long_limit_ms, {"max_retries": 0}),
        (contracts.PREFLIGHT, preflight, queues.SHORT, short_limit_ms, {}),
        (contracts.CREATE_SCRATCH_ORG, create_scratch_org, queues.LONG, long_limit_ms, {}),
        (contracts.DELETE_SCRATCH_ORG, delete_scratch_org, queues.LONG, long_limit_ms, {}),
        (
            contracts.UPDATE_ALL_TRANSLATIONS,
            update_all_translations,
            queues.DEFAULT,
            settings.default_time_limit_s * 1000,
            {},
        ),
    ]
    actors: dict[str, dramatiq.Actor[Any, Any]] = {}
    for name, fn, queue, time_limit_ms, options in table:
        if "max_retries" not in options:
            options = {"retry_when": transient, **options}
        actors[name] = dramatiq.actor(
            actor_name=name,
            queue_name=settings.queue(queue),
            broker=broker,
            time_limit=time_limit_ms,
            throws=(ValidationError,),
            **options,
        )(fn)
    return actors
