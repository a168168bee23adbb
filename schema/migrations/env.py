"""Alembic environment: runs against the connection handed in by schema.migrate."""

from alembic import context
from sqlalchemy import Connection

import schema  # noqa: F401  (registers every model on Base.metadata)
from schema.base import Base

config = context.config
target_metadata = Base.metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `tickwork migrate` (schema.migrate)")
run(connection)
