"""Deletes and updates in bounded batches, each its own short transaction.

A maintenance job may touch a million rows. Doing that in one statement holds locks and
a transaction for as long as it runs, blocks (or deadlocks with) the application's own
writes, and bloats memory on the database. Here each batch is one statement on at most
``batch_size`` rows — an id range, walked in primary-key order — committed on its own; it
waits only for rows another transaction is writing at that moment. Only ids reach Python,
so memory stays flat whatever the row count. The same code runs on SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, select, true

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

    def statement(chosen: ColumnElement[bool]) -> Any:
        return table.delete().where(chosen)

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

    def statement(chosen: ColumnElement[bool]) -> Any:
        return table.update().where(chosen).values(**values)

    return _in_batches(db, table, where, batch_size, statement, on_batch)


def _in_batches(
    db: Database,
    table: Table,
    where: ColumnElement[bool],
    batch_size: int,
    statement: Callable[[ColumnElement[bool]], Any],
    on_batch: Callable[[BatchStats], None] | None,
) -> BatchStats:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    stats = BatchStats()
    last_id: Any = None
    while True:
        # Keyset on the primary key: each batch is the id range from just after the last
        # batch to the id of the batch_size-th matching row, so it reads the table once,
        # in order, and never re-scans what earlier batches deleted. (Choosing ids with
        # "IN (SELECT ... LIMIT n)" made PostgreSQL hash-join every batch against a
        # sequential scan of the whole table; a bound computed inside the statement made
        # it fall back to one too.)
        after = table.c.id > last_id if last_id is not None else true()
        started = time.perf_counter()
        with db.engine.begin() as connection:
            bound = connection.scalar(
                select(table.c.id)
                .where(where, after)
                .order_by(table.c.id)
                .offset(batch_size - 1)
                .limit(1)
            )
            chosen = and_(where, after)
            if bound is not None:
                chosen = and_(chosen, table.c.id <= bound)
            done = int(connection.execute(statement(chosen)).rowcount or 0)
        elapsed = time.perf_counter() - started
        stats.rows += done
        stats.batches += 1
        stats.timings_s.append(elapsed)
        stats.longest_transaction_s = max(stats.longest_transaction_s, elapsed)
        if on_batch is not None:
            on_batch(stats)
        if bound is None:
            return stats
        last_id = bound
