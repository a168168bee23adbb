"""``tickwork api-token create|list|revoke``: bearer tokens for the admin API."""

from __future__ import annotations

from typing import Annotated

import typer

from admin.cli.common import fail, handles_errors, settings
from schema.engine import Database

app = typer.Typer(help="Admin API tokens (shown once, stored hashed).", no_args_is_help=True)


def _db() -> Database:
    return Database(settings())


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
def list_tokens() -> None:
    """Tokens: id, name, prefix, created, last used."""
    from admin.api.auth import list_tokens as rows

    for token in rows(_db()):
        used = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never"
        typer.echo(
            f"{token.id:>4}  {token.name:<24} {token.prefix}…  "
            f"created {token.created_at.isoformat(timespec='seconds')}  used {used}"
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
