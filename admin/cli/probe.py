"""``tickwork probe liveness|readiness``: the Kubernetes probes, as one-line checks.

Liveness reads the heartbeat file the worker or scheduler touches while its threads are
alive (see workers/heartbeat.py): it never fails just because RabbitMQ or PostgreSQL is
briefly down. Readiness asks whether the database and the broker answer right now.

Imports inside commands: to keep start-up short (see :mod:`admin.cli`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from admin.cli.common import fail, handles_errors, settings

app = typer.Typer(help="Kubernetes liveness and readiness probes.", no_args_is_help=True)


class Role(StrEnum):
    worker = "worker"
    scheduler = "scheduler"
    run = "run"


@app.command()
@handles_errors
def liveness(
    max_age_s: Annotated[
        float,
        typer.Option(
            envvar="TICKWORK_PROBE_MAX_AGE_S", min=1, help="Oldest acceptable heartbeat, seconds."
        ),
    ] = 60.0,
    role: Annotated[
        Role | None,
        typer.Option(
            envvar="TICKWORK_PROBE_ROLE",
            help="Whose heartbeat: `tickwork worker`, `scheduler` or `run` (each beats its "
            "own file); not needed when TICKWORK_HEARTBEAT_FILE is set.",
        ),
    ] = None,
) -> None:
    """Exit 0 if this pod's process beat within --max-age-s seconds."""
    from workers.heartbeat import age_s, heartbeat_path

    config = settings()
    if config.heartbeat_file is None and role is None:
        raise fail(
            "--role: whose heartbeat, worker, scheduler or run? (each beats its own file; "
            "or set TICKWORK_HEARTBEAT_FILE)",
            2,
        )
    path = heartbeat_path(config, role.value if role is not None else "worker")
    age = age_s(path)
    if age is None:
        raise fail(f"no heartbeat yet at {path}", 1)
    if age > max_age_s:
        raise fail(f"last heartbeat {age:.0f} s ago (limit {max_age_s:.0f} s) at {path}", 1)
    typer.echo(f"alive: heartbeat {age:.1f} s ago")


@app.command()
@handles_errors
def readiness(
    timeout_s: Annotated[
        float, typer.Option(envvar="TICKWORK_PROBE_TIMEOUT_S", min=0.1, help="Per check.")
    ] = 3.0,
) -> None:
    """Exit 0 if the database and the broker answer now."""
    from sqlalchemy import text

    from schema.engine import Database

    config = settings()
    timeouts = (
        {} if config.is_sqlite else {"connect_args": {"connect_timeout": int(timeout_s) or 1}}
    )
    db = Database(config, **timeouts)
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise fail(f"database not reachable: {detail}", 1) from None
    finally:
        db.dispose()
    if not config.embedded_broker:
        from tickwork.rabbitmq import connect

        try:  # ready when any node of a cluster answers
            connect(config.broker_urls, timeout_s=timeout_s).close()
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise fail(f"broker not reachable: {detail}", 1) from None
    typer.echo("ready: database and broker answer")
