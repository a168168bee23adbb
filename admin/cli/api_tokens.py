"""``tickwork api-token create|list|revoke``: bearer tokens for the admin API.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from admin.cli import output
from admin.cli.common import fail, handles_errors, open_database
from admin.cli.output import Column, Format

if TYPE_CHECKING:
    from schema.engine import Database

app = typer.Typer(help="Admin API tokens (shown once, stored hashed).", no_args_is_help=True)


def _db() -> Database:
    """The database (created and migrated on first use in embedded mode)."""
    return open_database()


@app.command()
@handles_errors
def create(name: Annotated[str, typer.Argument(help="What the token is for.")]) -> None:
    """Create a token and print it once."""
    from admin.api.auth import create_token

    try:
        new = create_token(_db(), name)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(f"token {new.id} ({new.name}); keep it, it is not shown again:")
    typer.echo(new.token)


@app.command("list")
@handles_errors
def list_tokens(
    format: Annotated[
        Format, typer.Option("--format", "-f", help=output.FORMAT_HELP)
    ] = Format.table,
) -> None:
    """Tokens: id, name, prefix, created, last used (never the token itself)."""
    from admin.api.auth import list_tokens as rows

    tokens = rows(_db())
    output.render(
        format,
        title="API tokens",
        columns=[
            Column("id", "id", wrap=False, justify="right"),
            Column("name", "name"),
            Column("prefix", "prefix", wrap=False),
            Column("created", "created", min_width=12),
            Column("used", "last used", min_width=12),
        ],
        rows=[
            {
                "id": str(t.id),
                "name": t.name,
                "prefix": f"{t.prefix}…",
                "created": output.when(t.created_at),
                "used": output.when(t.last_used_at, "never"),
            }
            for t in tokens
        ],
        data=[
            {
                "id": t.id,
                "name": t.name,
                "prefix": t.prefix,
                "created_at": output.iso(t.created_at),
                "last_used_at": output.iso(t.last_used_at),
            }
            for t in tokens
        ],
        empty="no API tokens (create one with `tickwork api-token create NAME`)",
    )


@app.command()
@handles_errors
def revoke(
    token_id: Annotated[
        int, typer.Argument(min=1, max=2**63 - 1, help="The id from `list`.")  # SQL BIGINT
    ],
) -> None:
    """Delete a token: requests with it are refused from now on."""
    from admin.api.auth import revoke_token

    if not revoke_token(_db(), token_id):
        raise fail(f"no token with id {token_id}", 1)
    typer.echo(f"token {token_id} revoked")
