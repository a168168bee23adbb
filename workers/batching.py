"""Deletes and updates in bounded batches, each its own short transaction.

A maintenance job may touch a million rows. Doing that in one statement holds locks and
a transaction for as long as it runs, blocks (or deadlocks with) the application's own
writes, and bloats memory on the database. Here each batch is one statement on at most
``batch_size`` ids chosen by a sub-select, committed on its own; on PostgreSQL the
sub-select takes ``FOR UPDATE SKIP LOCKED``, so rows another transaction is writing right
now are left for the next run instead of waited on. Nothing is loaded into Python, so
memory stays flat whatever the row count. The same code runs on SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Table, select

from schema.engine import Database


@dataclass
class BatchStats:
    """What a batched operation did: rows, batches, and its longest transaction."""

    rows: int = 0
    batches: int = 0
    longest_transaction_s: float = 0.0
    timings_s: list[float] = field(default_factory=list, repr=False)


def delete_in_batches(
    db: Database,
    table: Table,
    where: ColumnElement[bool],
    batch_size: int,
    on_batch: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    """Delete the rows of ``table`` matching ``where``; returns exact counts."""

    def statement(ids: Any) -> Any:
        return table.delete().where(table.c.id.in_(ids))

    return _in_batches(db, table, where, batch_size, statement, on_batch)


def update_in_batches(
    db: Database,
    table: Table,
    where: ColumnElement[bool],
    values: Mapping[str, Any],
    batch_size: int,
    on_batch: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    """Set ``values`` on the rows matching ``where``.

    ``where`` must stop matching a row once it is updated (e.g. ``status == 'started'``
    while setting ``status = 'canceled'``), or the loop would never end.
    """

    def statement(ids: Any) -> Any:
        return table.update().where(table.c.id.in_(ids)).values(**values)

    return _in_batches(db, table, where, batch_size, statement, on_batch)


def _in_batches(
    db: Database,
    table: Table,
    where: ColumnElement[bool],
    batch_size: int,
    statement: Callable[[Any], Any],
    on_batch: Callable[[BatchStats], None] | None,
) -> BatchStats:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    stats = BatchStats()
    while True:
        ids = select(table.c.id).where(where).limit(batch_size)
        if db.is_postgresql:
            ids = ids.with_for_update(skip_locked=True)
        started = time.perf_counter()
        with db.engine.begin() as connection:
            done = int(connection.execute(statement(ids)).rowcount or 0)
        elapsed = time.perf_counter() - started
        stats.rows += done
        stats.batches += 1
        stats.timings_s.append(elapsed)
        stats.longest_transaction_s = max(stats.longest_transaction_s, elapsed)
        if on_batch is not None:
            on_batch(stats)
        if done < batch_size:
            return stats
