"""``tickwork audit``: who changed what, when, before → after.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from admin.cli import output
from admin.cli.common import handles_errors, open_database
from admin.cli.output import Column, Format


def _short(value: dict[str, Any] | None) -> str:
    if value is None:
        return "—"
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


@handles_errors
def audit(
    actor: Annotated[
        str | None, typer.Option(help="Only this actor (token name, cli:USER).")
    ] = None,
    action: Annotated[str | None, typer.Option(help="Only this action (e.g. disable).")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target (e.g. job:NAME).")] = None,
    since: Annotated[str | None, typer.Option(help="Since: 30m, 24h, 7d or an ISO time.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest rows shown.")] = 50,
    format: Annotated[
        Format, typer.Option("--format", "-f", help=output.FORMAT_HELP)
    ] = Format.table,
) -> None:
    """The audit log, newest first: every change made from the CLI, API or page."""
    from admin.cli.runs import parse_since
    from schema.audit import ACTIONS, audit_entries

    if action is not None and action not in ACTIONS:
        raise typer.BadParameter(
            f"unknown action {action!r} (known: {', '.join(ACTIONS)})", param_hint="--action"
        )
    after = parse_since(since)
    with open_database().session() as session:
        rows = audit_entries(
            session, limit=limit, actor=actor, action=action, target=target, since=after
        )
    output.render(
        format,
        title=f"audit log, newest first (at most {limit})",
        columns=[
            Column("at", "when", min_width=12),
            Column("actor", "who", wrap=False),
            Column("action", "what", wrap=False),
            Column("target", "target", wrap=False),
            Column("change", "before → after"),
        ],
        rows=[
            {
                "at": output.when(r.at),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "change": f"{_short(r.before)} → {_short(r.after)}",
            }
            for r in rows
        ],
        data=[
            {
                "id": r.id,
                "at": output.iso(r.at),
                "actor": r.actor,
                "token_id": r.token_id,
                "action": r.action,
                "target": r.target,
                "before": r.before,
                "after": r.after,
                "detail": r.detail,
            }
            for r in rows
        ],
        empty="no audit entries" + (" match" if any((actor, action, target, since)) else ""),
    )
