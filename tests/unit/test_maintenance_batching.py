"""Bounded-batch delete/update on SQLite: exact counts, fixed-width id ranges read once,
widths adapted to density and time, gaps skipped, bad input refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, func, select

from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun
from tests.conftest import make_settings
from workers.batching import MAX_WIDTH_FACTOR, delete_in_batches, next_width, update_in_batches
from workers.context import JobResult, RunContext
from workers.jobs.housekeeping import prune_run_history

metadata = MetaData()
items = Table(
    "batching_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
)
SLOW = 60.0  # a time target no batch here comes near: widths follow density alone


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(make_settings(tmp_path))
    metadata.create_all(database.engine)
    yield database
    database.dispose()


def _load(db: Database, kinds: list[str], first_id: int | None = None) -> None:
    rows: list[dict[str, Any]] = [{"kind": kind} for kind in kinds]
    if first_id is not None:
        rows = [{"id": first_id + k, **row} for k, row in enumerate(rows)]
    with db.engine.begin() as connection:
        connection.execute(items.insert(), rows)


def _count(db: Database, kind: str) -> int:
    with db.engine.connect() as connection:
        return int(
            connection.scalar(select(func.count()).select_from(items).where(items.c.kind == kind))
            or 0
        )


def _statements(db: Database) -> list[str]:
    """Every SQL statement the engine runs from now on (first word, upper case)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", record)
    return seen


def test_delete_removes_exactly_the_matching_rows_in_bounded_batches(db: Database) -> None:
    # Given 25 expired rows (ids 1-30, every third of ids 1-15 live) and 5 live after them
    _load(db, ["expired", "expired", "live"] * 5 + ["expired"] * 15 + ["live"] * 5)
    seen: list[int] = []

    # When they are deleted aiming at 10 a batch
    stats = delete_in_batches(
        db,
        items,
        items.c.kind == "expired",
        10,
        on_batch=lambda s: seen.append(s.rows),
        target_s=SLOW,
    )

    # Then exactly the 25 expired rows are gone. Ranges: ids 1-10 (7 expired, so the next
    # is 10 x 10/7 = 14 wide), ids 11-24 (12: density rose, next 11 wide), ids 25-35 (6).
    assert stats.rows == 25
    assert seen == [7, 19, 25]
    assert stats.batches == 3
    assert len(stats.timings_s) == 3
    assert stats.longest_transaction_s == max(stats.timings_s)
    assert _count(db, "expired") == 0
    assert _count(db, "live") == 10


def test_exact_multiple_of_batch_size_needs_no_trailing_empty_batch(db: Database) -> None:
    # Given exactly two batches' worth of matching rows
    _load(db, ["expired"] * 20)

    # When deleted 10 at a time
    stats = delete_in_batches(db, items, items.c.kind == "expired", 10)

    # Then the count is exact, and the walk stops at the largest id: two ranges, no more
    assert stats.rows == 20
    assert stats.batches == 2
    assert _count(db, "expired") == 0


def test_each_range_is_read_once_by_its_own_statement(db: Database) -> None:
    # Given 100 expired rows, ids 1-100
    _load(db, ["expired"] * 100)
    statements = _statements(db)

    # When deleted 10 at a time
    stats = delete_in_batches(db, items, items.c.kind == "expired", 10, target_s=SLOW)

    # Then one look-up of where to start and end, then one DELETE per range: no batch reads
    # its range beforehand to find its bound
    assert (stats.rows, stats.batches) == (100, 10)
    assert [s for s in statements if s in ("SELECT", "DELETE")] == ["SELECT"] * 2 + ["DELETE"] * 10


def test_gaps_in_the_ids_are_jumped_not_walked(db: Database) -> None:
    # Given 5 expired rows at ids 1-5 and 5 more a million ids further on
    _load(db, ["expired"] * 5, first_id=1)
    _load(db, ["expired"] * 5, first_id=1_000_001)

    # When deleted 5 at a time
    stats = delete_in_batches(db, items, items.c.kind == "expired", 5, target_s=SLOW)

    # Then the empty range after the first five makes the next batch start at id 1,000,001
    assert stats.rows == 10
    assert stats.batches == 3
    assert _count(db, "expired") == 0


def test_sparse_matches_widen_the_range_but_never_past_its_cap(db: Database) -> None:
    # Given one expired row in every 10, over 1,000 ids
    _load(db, (["expired"] + ["live"] * 9) * 100)
    widths: list[int] = []
    statements = _statements(db)

    # When deleted aiming at 10 a batch
    stats = delete_in_batches(
        db,
        items,
        items.c.kind == "expired",
        10,
        on_batch=lambda s: widths.append(s.rows),
        target_s=SLOW,
    )

    # Then all 100 go, in ranges of at most MAX_WIDTH_FACTOR x 10 ids (4 rows each), so
    # about 1,000 / 40 batches rather than 1,000 / 10
    assert stats.rows == 100
    deltas = [b - a for a, b in zip([0, *widths], widths, strict=False)]
    assert max(deltas) <= MAX_WIDTH_FACTOR * 10 // 10
    assert stats.batches <= 1_000 // (MAX_WIDTH_FACTOR * 10) + 3
    assert statements.count("DELETE") == stats.batches


def test_nothing_matching_is_one_empty_batch(db: Database) -> None:
    _load(db, ["live"] * 3)

    stats = delete_in_batches(db, items, items.c.kind == "expired", 5)

    assert (stats.rows, stats.batches) == (0, 1)
    assert _count(db, "live") == 3


def test_empty_table_is_one_empty_batch(db: Database) -> None:
    stats = delete_in_batches(db, items, items.c.kind == "expired", 5)

    assert (stats.rows, stats.batches) == (0, 1)


def test_update_sets_values_only_on_matching_rows(db: Database) -> None:
    # Given 7 started rows and 4 finished ones
    _load(db, ["started"] * 7 + ["finished"] * 4)

    # When started rows are marked erred 3 at a time
    stats = update_in_batches(
        db, items, items.c.kind == "started", {"kind": "erred"}, 3, target_s=SLOW
    )

    # Then all 7, and only those, changed (ranges 1-3, 4-6, 7-9, then 10-15 finds none)
    assert stats.rows == 7
    assert stats.batches == 4
    assert _count(db, "erred") == 7
    assert _count(db, "finished") == 4
    assert _count(db, "started") == 0


def test_update_whose_rows_keep_matching_still_ends(db: Database) -> None:
    # Given 7 started rows, an update that leaves them matching visits each range once
    _load(db, ["started"] * 7)

    stats = update_in_batches(db, items, items.c.kind == "started", {"kind": "started"}, 3)

    assert stats.rows == 7


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_refused_and_changes_nothing(db: Database, batch_size: int) -> None:
    _load(db, ["expired"] * 4)

    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        delete_in_batches(db, items, items.c.kind == "expired", batch_size)

    assert _count(db, "expired") == 4


@pytest.mark.parametrize(
    ("width", "rows", "elapsed_s", "expected", "why"),
    [
        (1_000, 1_000, 0.01, 1_000, "dense and fast: unchanged"),
        (1_000, 500, 0.01, 2_000, "half the ids match: twice as wide"),
        (1_000, 100, 0.01, 2_000, "sparse: at most doubles per batch"),
        (1_000, 0, 0.0, 2_000, "empty: doubles"),
        (4_000, 10, 0.01, 4_000, "never wider than MAX_WIDTH_FACTOR x batch_size"),
        (1_000, 1_000, 0.5, 200, "slow (0.5 s against 0.1 s): a fifth as wide"),
        (1_000, 2_000, 0.01, 500, "denser than the batch size (duplicate-free ids): narrower"),
        (1, 1, 100.0, 1, "never below one id"),
    ],
)
def test_next_width_follows_density_and_time(
    width: int, rows: int, elapsed_s: float, expected: int, why: str
) -> None:
    assert next_width(width, rows, elapsed_s, batch_size=1_000, target_s=0.1) == expected, why


def test_a_slow_batch_shrinks_the_next_range(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 100 expired rows and a clock on which every batch takes 0.25 s
    _load(db, ["expired"] * 100)
    ticks = iter(float(k) * 0.25 for k in range(10_000))
    monkeypatch.setattr("workers.batching.perf_counter", lambda: next(ticks))
    seen: list[int] = []

    # When deleted aiming at 40 a batch, with a 0.1 s target
    stats = delete_in_batches(
        db, items, items.c.kind == "expired", 40, on_batch=lambda s: seen.append(s.rows)
    )

    # Then each range is 0.1 / 0.25 = 0.4 times the one before (40, 16, 6, 2, then 1-id
    # ranges), and still all rows go
    assert stats.rows == 100
    assert seen[:5] == [40, 56, 62, 64, 65]
    assert stats.longest_transaction_s == pytest.approx(0.25)


def test_prune_run_history_deletes_only_old_finished_runs(tmp_path: Path) -> None:
    # Given, on a migrated database, finished runs older than the history limit (two of
    # each finished status), an old run still running, and a recent finished one
    from schema import migrate

    db = Database(make_settings(tmp_path, TICKWORK_CLEANUP_BATCH_SIZE="3"))
    migrate.upgrade(db.engine)
    old = utcnow() - dt.timedelta(days=db.settings.run_history_days + 1)
    statuses = ["succeeded", "failed", "skipped", "canceled"] * 2
    with db.session() as s:
        for k, status in enumerate(statuses):
            s.add(JobRun(job_name=f"old{k}", status=status, queued_at=old, finished_at=old))
        s.add(JobRun(job_name="running", status="running", queued_at=old, finished_at=old))
        s.add(JobRun(job_name="recent", status="succeeded", finished_at=utcnow()))
    ctx = RunContext(
        run_id=0, job_name="prune_run_history", scheduled_for=None, settings=db.settings, db=db
    )
    try:
        # When the history is pruned, 3 rows a batch
        result = prune_run_history(ctx)
        assert isinstance(result, JobResult)

        # Then the 8 old finished runs, and only those, are gone, and the count says so
        assert result.records_processed == 8 and ctx.records_processed == 8
        assert result.output == "deleted 8; 2 kept"
        with db.session() as s:
            assert sorted(s.scalars(select(JobRun.job_name))) == ["recent", "running"]
    finally:
        db.dispose()
