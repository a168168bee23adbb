"""Bounded-batch delete/update on SQLite: exact counts, batch bounds, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select

from schema.engine import Database
from tests.conftest import make_settings
from workers.batching import delete_in_batches, update_in_batches

metadata = MetaData()
items = Table(
    "batching_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(make_settings(tmp_path))
    metadata.create_all(database.engine)
    yield database
    database.dispose()


def _load(db: Database, kinds: list[str]) -> None:
    with db.engine.begin() as connection:
        connection.execute(items.insert(), [{"kind": kind} for kind in kinds])


def _count(db: Database, kind: str) -> int:
    with db.engine.connect() as connection:
        return int(
            connection.scalar(select(func.count()).select_from(items).where(items.c.kind == kind))
            or 0
        )


def test_delete_removes_exactly_the_matching_rows_in_bounded_batches(db: Database) -> None:
    # Given 25 expired rows interleaved with 10 live ones
    _load(db, ["expired", "expired", "live"] * 5 + ["expired"] * 15 + ["live"] * 5)
    seen: list[int] = []

    # When they are deleted 10 at a time
    stats = delete_in_batches(
        db, items, items.c.kind == "expired", 10, on_batch=lambda s: seen.append(s.rows)
    )

    # Then exactly the 25 expired rows are gone, in 3 batches of at most 10
    assert stats.rows == 25
    assert stats.batches == 3
    assert seen == [10, 20, 25]
    assert len(stats.timings_s) == 3
    assert stats.longest_transaction_s == max(stats.timings_s)
    assert _count(db, "expired") == 0
    assert _count(db, "live") == 10


def test_exact_multiple_of_batch_size_ends_with_an_empty_batch(db: Database) -> None:
    # Given exactly two batches' worth of matching rows
    _load(db, ["expired"] * 20)

    # When deleted 10 at a time
    stats = delete_in_batches(db, items, items.c.kind == "expired", 10)

    # Then the count is exact and the last (bound-less) batch finds nothing
    assert stats.rows == 20
    assert stats.batches == 3
    assert _count(db, "expired") == 0


def test_nothing_matching_is_one_empty_batch(db: Database) -> None:
    _load(db, ["live"] * 3)

    stats = delete_in_batches(db, items, items.c.kind == "expired", 5)

    assert (stats.rows, stats.batches) == (0, 1)
    assert _count(db, "live") == 3


def test_update_sets_values_only_on_matching_rows(db: Database) -> None:
    # Given 7 started rows and 4 finished ones
    _load(db, ["started"] * 7 + ["finished"] * 4)

    # When started rows are marked erred 3 at a time
    stats = update_in_batches(db, items, items.c.kind == "started", {"kind": "erred"}, 3)

    # Then all 7, and only those, changed
    assert stats.rows == 7
    assert stats.batches == 3
    assert _count(db, "erred") == 7
    assert _count(db, "finished") == 4
    assert _count(db, "started") == 0


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_refused_and_changes_nothing(db: Database, batch_size: int) -> None:
    _load(db, ["expired"] * 4)

    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        delete_in_batches(db, items, items.c.kind == "expired", batch_size)

    assert _count(db, "expired") == 4
