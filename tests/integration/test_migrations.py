"""Migrations and models never drift apart, and the schema works on both databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect

from schema import Base
from schema import migrate as migrations
from schema.engine import Database


def test_postgres_migrations_match_the_models(pg_db: Any) -> None:
    # Given a database migrated to head, then autogenerate finds nothing to change.
    assert migrations.current_revision(pg_db.engine) == migrations.head_revision()
    assert migrations.drift(pg_db.engine) == []


def test_postgres_downgrade_and_upgrade_round_trip(pg_db: Any) -> None:
    migrations.downgrade(pg_db.engine, "base")
    assert set(inspect(pg_db.engine).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(pg_db.engine)
    assert set(Base.metadata.tables) <= set(inspect(pg_db.engine).get_table_names())
    assert migrations.drift(pg_db.engine) == []


def test_sqlite_migrations_match_the_models(sqlite_db: Database) -> None:
    # Given a SQLite database migrated to head, when migrated again (idempotent),
    migrations.upgrade(sqlite_db.engine)
    # then autogenerate finds nothing to change.
    assert migrations.drift(sqlite_db.engine) == []
