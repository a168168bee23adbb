"""``tickwork queues list|migrate``: tickwork's RabbitMQ queues, and changing their type.

RabbitMQ fixes a queue's type (classic or quorum) when it is declared; changing
``TICKWORK_QUEUE_TYPE`` on a deployment needs its queues rebuilt with their messages:
``tickwork queues migrate --to quorum`` (:mod:`tickwork.queue_admin`).

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from admin.cli import output
from admin.cli.common import fail, handles_errors, settings
from admin.cli.output import Column, Format

if TYPE_CHECKING:
    from tickwork.settings import Settings

app = typer.Typer(
    help="RabbitMQ queues: type, messages, consumers, leader node; migrate their type.",
    no_args_is_help=True,
)


class QueueTypeChoice(StrEnum):
    classic = "classic"
    quorum = "quorum"


def _rabbitmq_settings() -> Settings:
    config = settings()
    if config.embedded_broker:
        raise fail("TICKWORK_BROKER_URL: queues live in RabbitMQ (amqp://...); unset: in-process")
    return config


@app.command("list")
@handles_errors
def list_queues(
    format: Annotated[
        Format,
        typer.Option("--format", "-f", help=output.FORMAT_HELP, envvar="TICKWORK_QUEUES_FORMAT"),
    ] = Format.table,
) -> None:
    """Every queue tickwork declares: type, messages, consumers and leader node (type and
    leader need TICKWORK_RABBITMQ_MANAGEMENT_URL; without it, AMQP counts ready messages)."""
    from tickwork.queue_admin import list_queues as listing

    found = listing(_rabbitmq_settings())
    output.render(
        format,
        title="Queues",
        columns=[
            Column("name", "queue", wrap=False),
            Column("type", "type", wrap=False),
            Column("messages", "messages", wrap=False, justify="right"),
            Column("consumers", "consumers", wrap=False, justify="right"),
            Column("leader", "leader", wrap=False),
        ],
        rows=[
            {
                "name": q.name,
                "type": q.type if q.exists else "(not declared)",
                "messages": str(q.messages),
                "consumers": str(q.consumers),
                "leader": q.leader,
            }
            for q in found
        ],
        data=[
            {
                "name": q.name,
                "exists": q.exists,
                "type": q.type if q.exists else None,
                "messages": q.messages,
                "consumers": q.consumers,
                "leader": q.leader if q.exists and q.leader != "?" else None,
            }
            for q in found
        ],
    )


@app.command()
@handles_errors
def migrate(
    to: Annotated[
        QueueTypeChoice,
        typer.Option("--to", help="The new type of every tickwork queue.", case_sensitive=False),
    ],
) -> None:
    """Rebuild every tickwork queue as a classic or quorum queue, keeping every message
    (each moved to a holding queue and back, acked only once its copy is confirmed).
    Stop the workers and the scheduler first; afterwards, start everything with
    TICKWORK_QUEUE_TYPE set to the new type. Safe to run again if interrupted."""
    from tickwork.queue_admin import migrate as rebuild

    config = _rabbitmq_settings()
    reports = rebuild(config, to.value, progress=typer.echo)
    moved = sum(r.moved for r in reports)
    rebuilt = [r.queue for r in reports if not r.already and not r.missing]
    typer.echo(
        f"{len(rebuilt)} queue(s) rebuilt as {to.value}, {moved} message(s) kept; "
        f"{sum(r.already for r in reports)} already {to.value}, "
        f"{sum(r.missing for r in reports)} not declared yet"
    )
    if config.queue_type != to.value:
        typer.echo(
            f"now start every tickwork process with TICKWORK_QUEUE_TYPE={to.value} "
            f"(this environment says {config.queue_type})"
        )
