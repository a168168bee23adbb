"""The message catalogue: every message tickwork sends by name, its queue and its payload.

Senders (producers, the workers' own follow-up messages, the ticker) need only this
catalogue and :mod:`tickwork.publish`, never a worker runtime: Dramatiq's RabbitMQ broker
declares a queue when a message is first enqueued on it. Scheduled jobs are the one
family not listed: each declared job is an actor of its own name on its job's queue,
carrying only ``run_id``.

Message contracts: one versioned, validated payload type per install actor.

The same model validates a payload when a service sends it (:func:`encode`) and when
a worker receives it (:func:`decode`), so a message that passed the client can only
fail on receipt if it was produced by something else (an old producer, a hand-made
message). Such a message is dead-lettered with the reason by
:class:`workers.middleware.contracts.ContractMiddleware`; it never reaches an actor.

Each payload carries ``v`` (the contract version). A change that old workers cannot
read gets a new version number; workers reject versions they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from tickwork import queues
from tickwork.errors import ValidationError

ENQUEUE_INSTALL_JOB = "enqueue_install_job"
RUN_FLOWS = "run_flows"
PREFLIGHT = "preflight"
CREATE_SCRATCH_ORG = "create_scratch_org"
DELETE_SCRATCH_ORG = "delete_scratch_org"
UPDATE_ALL_TRANSLATIONS = "update_all_translations"
TICK = "tick"  # periodiq's minute tick; no payload (its minute is the scheduled_at option)

# Message option of a scheduled run whose job skips overlapping runs: the worker judges
# overlap when the slot is due ("skip" = skip this run if the job is busy then).
OVERLAP_OPTION = "tickwork_overlap"


class Contract(BaseModel):
    """Base of every payload: strict about unknown fields, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1] = 1


class EnqueueInstallJob(Contract):
    """Enqueue one install job now (the minute sweep catches any that are missed)."""

    job_id: int = Field(gt=0)


class RunFlows(Contract):
    job_id: int = Field(gt=0)


class Preflight(Contract):
    preflight_id: int = Field(gt=0)


class CreateScratchOrg(Contract):
    scratch_org_uuid: str = Field(min_length=36, max_length=36)


class DeleteScratchOrg(Contract):
    scratch_org_uuid: str = Field(min_length=36, max_length=36)


class UpdateAllTranslations(Contract):
    language: str | None = Field(None, min_length=1, max_length=16, pattern=r"^[A-Za-z_-]+$")


@dataclass(frozen=True)
class MessageType:
    """One entry of the catalogue: who reads the message, where, and what it carries."""

    actor_name: str
    queue: str  # logical queue (tickwork.queues); the real name gets the queue prefix
    payload: type[Contract] | None  # None: no payload (the tick)


CATALOGUE: dict[str, MessageType] = {
    entry.actor_name: entry
    for entry in (
        # MetaDeploy's queues: installs and scratch orgs long, enqueuing and preflights short.
        MessageType(ENQUEUE_INSTALL_JOB, queues.SHORT, EnqueueInstallJob),
        MessageType(RUN_FLOWS, queues.LONG, RunFlows),
        MessageType(PREFLIGHT, queues.SHORT, Preflight),
        MessageType(CREATE_SCRATCH_ORG, queues.LONG, CreateScratchOrg),
        MessageType(DELETE_SCRATCH_ORG, queues.LONG, DeleteScratchOrg),
        MessageType(UPDATE_ALL_TRANSLATIONS, queues.DEFAULT, UpdateAllTranslations),
        MessageType(TICK, queues.SCHEDULER, None),
    )
}
CONTRACTS: dict[str, type[Contract]] = {
    name: entry.payload for name, entry in CATALOGUE.items() if entry.payload is not None
}
ACTOR_OF: dict[type[Contract], str] = {model: name for name, model in CONTRACTS.items()}


def _explain(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "payload"
        parts.append(f"{where}: {error.get('msg', 'is invalid')} (got {error.get('input')!r})")
    return "; ".join(parts)


def actor_for(payload: Contract) -> str:
    try:
        return ACTOR_OF[type(payload)]
    except KeyError:
        raise ValidationError(f"{type(payload).__name__} is not a message contract") from None


def encode(payload: Contract) -> dict[str, Any]:
    """The message kwargs for ``payload`` (validated when the payload was built)."""
    actor_for(payload)  # a contract of the catalogue, not any pydantic model
    return payload.model_dump(mode="json")


def decode(actor_name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> Contract:
    """Validate a received message's arguments; raise :class:`ValidationError` saying why."""
    model = CONTRACTS.get(actor_name)
    if model is None:
        raise ValidationError(f"{actor_name!r} has no message contract")
    if args:
        raise ValidationError(f"{actor_name}: positional arguments are not accepted (got {args!r})")
    if "v" not in kwargs:
        raise ValidationError(f"{actor_name}: payload has no contract version 'v'")
    if kwargs["v"] != 1:
        raise ValidationError(
            f"{actor_name}: contract version {kwargs['v']!r} is not supported (this worker reads 1)"
        )
    try:
        return model.model_validate(kwargs)
    except pydantic.ValidationError as exc:
        raise ValidationError(f"{actor_name}: {_explain(exc)}") from None
