"""``tickwork dead-letters list|replay|purge``: messages that could not be processed.

The same store and rules as the API and the page (:mod:`admin.api.dead_letters`): the
rows workers wrote for messages they refused, plus the messages Dramatiq dead-lettered
itself in RabbitMQ's ``<queue>.XQ`` (after their last retry, or too old), moved into the
table when listed, replayed or purged.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from admin.cli import output
from admin.cli.common import fail, handles_errors, open_database
from admin.cli.output import Column, Format

if TYPE_CHECKING:
    import dramatiq

    from schema.engine import Database

app = typer.Typer(
    help="Dead letters: messages that failed for good or were refused, with the reason.",
    no_args_is_help=True,
)
QueueOption = Annotated[
    str | None,
    typer.Option(
        "--queue", "-q", help="Only this queue (its real name, or default/short/long/scheduler)."
    ),
]


def _broker(db: Database) -> dramatiq.Broker | None:
    """The workers' broker (RabbitMQ), or None in the embedded mode: its in-process broker
    lives in `tickwork run`, out of this command's reach."""
    if db.settings.embedded_broker:
        return None
    from workers.app import build_runtime

    return build_runtime(db.settings, db).broker


@app.command("list")
@handles_errors
def list_letters(
    queue: QueueOption = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    format: Annotated[
        Format, typer.Option("--format", "-f", help=output.FORMAT_HELP)
    ] = Format.table,
) -> None:
    """Dead letters, newest first: id, queue, actor, message id, reason, when."""
    from admin.api.dead_letters import list_dead_letters

    db = open_database()
    broker = _broker(db)
    try:
        letters = list_dead_letters(db, queue, limit, settings=db.settings, broker=broker)
    finally:
        if broker is not None:
            broker.close()
    output.render(
        format,
        title="Dead letters",
        columns=[
            Column("id", "id", wrap=False, justify="right"),
            Column("queue", "queue", wrap=False),
            Column("actor", "actor"),
            Column("message", "message id", wrap=False),
            Column("reason", "reason", min_width=20),
            Column("when", "when", min_width=12),
        ],
        rows=[
            {
                "id": str(d.id),
                "queue": d.queue_name,
                "actor": d.actor_name,
                "message": d.message_id,
                "reason": d.reason,
                "when": output.when(d.created_at),
            }
            for d in letters
        ],
        data=[
            {
                "id": d.id,
                "queue_name": d.queue_name,
                "actor_name": d.actor_name,
                "message_id": d.message_id,
                "reason": d.reason,
                "created_at": output.iso(d.created_at),
                "message": d.message,
            }
            for d in letters
        ],
        empty="no dead letters",
    )


@app.command()
@handles_errors
def replay(
    dead_letter_id: Annotated[
        int | None, typer.Argument(min=1, max=2**31 - 1, help="The id from `list`.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every replayable one.")] = False,
    queue: QueueOption = None,
) -> None:
    """Send a dead letter again (new message id, retries reset) and forget it."""
    from admin.api import dead_letters
    from schema.audit import cli_actor
    from tickwork.errors import ValidationError

    if (dead_letter_id is None) == (not all_):
        raise fail("give a dead letter id, or --all (optionally with --queue)", 2)
    db = open_database()
    broker = _broker(db)
    if broker is None:
        raise fail(
            "the embedded mode's broker lives in `tickwork run`: replay from its page or "
            "API (POST /api/dead-letters/{id}/replay)",
            1,
        )
    try:
        if dead_letter_id is None:
            count = dead_letters.replay_all(
                db, broker, queue, settings=db.settings, actor=cli_actor()
            )
            typer.echo(f"replayed {count} dead letter(s)")
            return
        try:
            if not dead_letters.replay(db, broker, dead_letter_id, actor=cli_actor()):
                raise fail(f"no dead letter {dead_letter_id}", 1)
        except ValidationError as exc:
            raise fail(str(exc), 1) from None
        typer.echo(f"dead letter {dead_letter_id} replayed")
    finally:
        broker.close()


@app.command()
@handles_errors
def purge(
    queue: QueueOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete dead letters (of one queue, or all), the broker's included; prints how many."""
    from admin.api.dead_letters import purge as purge_letters
    from schema.audit import cli_actor

    if not yes and not typer.confirm(
        f"Delete every dead letter{f' of {queue}' if queue else ''}?", default=False
    ):
        raise fail("nothing deleted", 1)
    db = open_database()
    broker = _broker(db)
    try:
        count = purge_letters(db, queue, settings=db.settings, broker=broker, actor=cli_actor())
    finally:
        if broker is not None:
            broker.close()
    typer.echo(f"purged {count} dead letter(s)")
