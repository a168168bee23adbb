"""Deletes and updates in bounded batches, each its own short transaction.

A maintenance job may touch a million rows. Doing that in one statement holds locks and
a transaction for as long as it runs, blocks (or deadlocks with) the application's own
writes, and bloats memory on the database. Here each batch is one statement on one
fixed-width primary-key range — ``lo <= id < lo + width`` — committed on its own; it waits
only for rows another transaction is writing at that moment. Each range is read once, by
the statement itself: nothing is read beforehand to find where a batch ends.

The width starts at ``batch_size`` and adapts from the previous batch: it is scaled so the
next range holds about ``batch_size`` matching rows (at most doubling from one batch to the
next, and never wider than ``MAX_WIDTH_FACTOR x batch_size`` ids, so a jump in density can
not make a batch much larger than planned), and shrunk when a batch took longer than
``target_s``, so no transaction comes near a second. A range with nothing to do makes the
next batch start at the next matching id (one index probe), so gaps in the ids cost nothing.

Rows are those matching ``where`` with an id up to the largest id when the operation
starts; rows inserted later are left to the next run. Only ids and counts reach Python, so
memory stays flat whatever the row count. The same code runs on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func, select

from schema.engine import Database

# A batch that took longer than this shrinks the next one (seconds): well under 1 s.
TARGET_TRANSACTION_S = 0.1
# No range is wider than this many times batch_size ids.
MAX_WIDTH_FACTOR = 4


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
    target_s: float = TARGET_TRANSACTION_S,
) -> BatchStats:
    """Delete the rows of ``table`` matching ``where``; returns exact counts."""

    def statement(chosen: ColumnElement[bool]) -> Any:
        return table.delete().where(chosen)

    return _in_batches(db, table, where, batch_size, statement, on_batch, target_s)


def update_in_batches(
    db: Database,
    table: Table,
    where: ColumnElement[bool],
    values: Mapping[str, Any],
    batch_size: int,
    on_batch: Callable[[BatchStats], None] | None = None,
    target_s: float = TARGET_TRANSACTION_S,
) -> BatchStats:
    """Set ``values`` on the rows matching ``where``; each range is visited once."""

    def statement(chosen: ColumnElement[bool]) -> Any:
        return table.update().where(chosen).values(**values)

    return _in_batches(db, table, where, batch_size, statement, on_batch, target_s)


def next_width(width: int, rows: int, elapsed_s: float, batch_size: int, target_s: float) -> int:
    """The width of the next id range, from what the last one (``width`` ids) did."""
    factor = 2.0
    if rows:
        factor = min(factor, batch_size / rows)
    if elapsed_s > 0:
        factor = min(factor, target_s / elapsed_s)
    return max(1, min(int(width * factor), MAX_WIDTH_FACTOR * batch_size))


def _in_batches(
    db: Database,
    table: Table,
    where: ColumnElement[bool],
    batch_size: int,
    statement: Callable[[ColumnElement[bool]], Any],
    on_batch: Callable[[BatchStats], None] | None,
    target_s: float,
) -> BatchStats:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    pk = table.c.id
    stats = BatchStats()
    width = batch_size
    lo: int | None = None  # first id of the next range; None: probe for the next match
    start: int | None = None  # the next probe looks from here on
    last: int | None = None  # the largest id when we started
    # One connection for all batches (no pool checkout and pre-ping per batch); each
    # batch is its own transaction on it, committed before the next begins.
    with db.engine.connect() as connection:
        while True:
            started = perf_counter()
            finished = False
            done = 0
            with connection.begin():
                if last is None:
                    last = connection.scalar(select(func.max(pk)))
                if lo is None and last is not None:
                    # Index probe on the primary key: the first matching id from here on.
                    probe = select(pk).where(where, pk <= last).order_by(pk).limit(1)
                    if start is not None:
                        probe = probe.where(pk >= start)
                    lo = connection.scalar(probe)
                if lo is None:
                    finished = True
                else:
                    chosen = and_(where, pk >= lo, pk < lo + width)
                    done = int(connection.execute(statement(chosen)).rowcount or 0)
            elapsed = perf_counter() - started
            stats.rows += done
            stats.batches += 1
            stats.timings_s.append(elapsed)
            stats.longest_transaction_s = max(stats.longest_transaction_s, elapsed)
            if on_batch is not None:
                on_batch(stats)
            if finished or lo is None or last is None:
                return stats
            after = lo + width
            if after > last:
                return stats
            width = next_width(width, done, elapsed, batch_size, target_s)
            if done:
                lo = after
            else:
                lo, start = None, after
