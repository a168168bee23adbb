"""``tickwork api-token create|list|revoke``: bearer tokens for the admin API.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from admin.cli import output
from admin.cli.common import fail, handles_errors, open_database
from admin.cli.output import Column, Format

if TYPE_CHECKING:
    from schema.engine import Database

app = typer.Typer(help="Admin API tokens (shown once, stored hashed).", no_args_is_help=True)


class Scope(StrEnum):
    """What a token may do (each includes the ones before it)."""

    viewer = "viewer"  # read only
    operator = "operator"  # also run, enable/disable, hold/release, replay, cancel, retry
    admin = "admin"  # also schedules, notifications, purge, tokens


def _db() -> Database:
    """The database (created and migrated on first use in embedded mode)."""
    return open_database()


@app.command()
@handles_errors
def create(
    name: Annotated[str, typer.Argument(help="What the token is for.")],
    scope: Annotated[
        Scope,
        typer.Option(
            "--scope",
            help="viewer: read only; operator: also run, enable/disable, hold/release, "
            "replay, cancel, retry; admin: also schedules, notifications, purge, tokens.",
        ),
    ] = Scope.viewer,
    expires_in_days: Annotated[
        int | None,
        typer.Option(
            "--expires-in-days",
            min=1,
            max=3650,
            help="Days until it expires [default: TICKWORK_API_TOKEN_EXPIRE_AFTER_DAYS].",
        ),
    ] = None,
) -> None:
    """Create a token and print it once (scope viewer unless --scope says more)."""
    from admin.api.auth import create_token
    from schema.audit import cli_actor

    try:
        new = create_token(
            _db(), name, scope=scope.value, expires_in_days=expires_in_days, actor=cli_actor()
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(
        f"token {new.id} ({new.name}, scope {new.scope}, expires "
        f"{output.when(new.expires_at)}); keep it, it is not shown again:"
    )
    typer.echo(new.token)


@app.command("list")
@handles_errors
def list_tokens(
    format: Annotated[
        Format, typer.Option("--format", "-f", help=output.FORMAT_HELP)
    ] = Format.table,
) -> None:
    """Tokens: id, name, scope, prefix, created, expires, last used (never the token)."""
    from admin.api.auth import expires_at
    from admin.api.auth import list_tokens as rows
    from admin.cli.common import settings

    tokens = rows(_db())
    days = settings().api_token_expire_after_days
    output.render(
        format,
        title="API tokens",
        columns=[
            Column("id", "id", wrap=False, justify="right"),
            Column("name", "name"),
            Column("scope", "scope", wrap=False),
            Column("prefix", "prefix", wrap=False),
            Column("created", "created", min_width=12),
            Column("expires", "expires", min_width=12),
            Column("used", "last used", min_width=12),
        ],
        rows=[
            {
                "id": str(t.id),
                "name": t.name,
                "scope": t.scope,
                "prefix": f"{t.prefix}…",
                "created": output.when(t.created_at),
                "expires": output.when(expires_at(t, days)),
                "used": output.when(t.last_used_at, "never"),
            }
            for t in tokens
        ],
        data=[
            {
                "id": t.id,
                "name": t.name,
                "scope": t.scope,
                "prefix": t.prefix,
                "created_at": output.iso(t.created_at),
                "expires_at": output.iso(expires_at(t, days)),
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
    from schema.audit import cli_actor

    if not revoke_token(_db(), token_id, actor=cli_actor()):
        raise fail(f"no token with id {token_id}", 1)
    typer.echo(f"token {token_id} revoked")
