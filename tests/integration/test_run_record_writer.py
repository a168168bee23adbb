"""Group commit of run records, on PostgreSQL (batched unnest statements) and SQLite
(the ``db`` fixture runs each test on both)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

from sqlalchemy import select

from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import JobRun
from workers.middleware.run_record_writer import FinishRun, RunRecordWriter, StartRun, beat_runs

# A ``live_after`` in the future: no heartbeat counts as alive (tests of other rules).
IGNORE_HEARTBEATS = utcnow() + dt.timedelta(days=365)


def _queued(db: Database, count: int) -> list[int]:
    with db.session() as s:
        runs = [JobRun(job_name="t_count", trigger="manual", status="queued") for _ in range(count)]
        s.add_all(runs)
        s.flush()
        return [r.id for r in runs]


def _together(calls: list[Any]) -> list[Any]:
    """Run the calls on threads released at once, so the writer sees them together."""
    results: list[Any] = [None] * len(calls)
    gate = threading.Barrier(len(calls))

    def run(i: int) -> None:
        gate.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_starts_and_finishes_are_each_recorded_once(db: Database) -> None:
    # Given 24 queued runs and a writer,
    writer = RunRecordWriter(db)
    ids = _queued(db, 24)
    # when 24 threads start them at once,
    started = _together(
        [
            lambda i=i: writer.start(
                StartRun(uuid.uuid4().hex, "t_count", i, 10, None, IGNORE_HEARTBEATS)
            )
            for i in ids
        ]
    )
    # then each run is started once, and fewer statements than writes were needed on PG;
    assert sorted(s[0] for s in started) == ids
    if db.is_postgresql:
        assert writer.batches < writer.writes
    # and when they finish together with different outcomes (NULLs mixed with values),
    now = utcnow()
    outcomes = [
        {
            "status": "succeeded",
            "skip_reason": None,
            "records_processed": i,
            "output": f"o{i}",
            "error": None,
            "finished_at": now,
        }
        if i % 3
        else {
            "status": "queued",
            "skip_reason": None,
            "records_processed": 0,
            "output": "",
            "error": "boom",
            "finished_at": None,
        }
        for i in range(len(ids))
    ]
    finished = _together(
        [
            lambda i=i, run_id=run_id: writer.finish(FinishRun(run_id, outcomes[i]))
            for i, run_id in enumerate(ids)
        ]
    )
    # then every record holds exactly its own outcome.
    assert [r.id for r in finished] == ids
    with db.session() as s:
        rows = {r.id: r for r in s.scalars(select(JobRun))}
    for i, run_id in enumerate(ids):
        row = rows[run_id]
        assert (row.status, row.records_processed, row.error) == (
            outcomes[i]["status"],
            outcomes[i]["records_processed"],
            outcomes[i]["error"],
        )
        assert row.attempts == 1 and row.started_at is not None
        assert (row.finished_at is None) == (outcomes[i]["finished_at"] is None)


def test_start_of_a_finished_run_or_a_known_message_finds_nothing(db: Database) -> None:
    writer = RunRecordWriter(db)
    (run_id,) = _queued(db, 1)
    with db.session() as s:
        run = s.get(JobRun, run_id)
        assert run is not None
        run.status = "succeeded"
    assert writer.start(StartRun("m-1", "t_count", run_id, 10, None, IGNORE_HEARTBEATS)) is None
    # A plain message creates its run once; the same message again finds nothing new.
    first = writer.start(StartRun("m-2", "t_count", None, 10, utcnow(), IGNORE_HEARTBEATS))
    assert first is not None and first[1] == "t_count"
    assert writer.start(StartRun("m-2", "t_count", None, 10, utcnow(), IGNORE_HEARTBEATS)) is None


def test_two_deliveries_of_one_run_in_one_batch_are_written_one_after_the_other(
    db: Database,
) -> None:
    writer = RunRecordWriter(db)
    (run_id,) = _queued(db, 1)
    _together(
        [lambda: writer.start(StartRun("a", "t_count", run_id, 10, None, IGNORE_HEARTBEATS))] * 2
    )
    with db.session() as s:
        run = s.get(JobRun, run_id)
        assert run is not None and run.attempts == 2  # never one update lost in a join


def test_a_run_with_a_fresh_heartbeat_is_not_started_by_a_second_delivery(db: Database) -> None:
    # Given a run started by one delivery, whose worker keeps its heartbeat fresh,
    writer = RunRecordWriter(db)
    (run_id,) = _queued(db, 1)
    assert writer.start(StartRun("m", "t_count", run_id, 10, None, IGNORE_HEARTBEATS))
    assert beat_runs(db, [run_id]) == 1
    # when a second delivery arrives (broker restart, consumer_timeout),
    live_after = utcnow() - dt.timedelta(seconds=30)
    second = writer.start(StartRun("m", "t_count", run_id, 10, None, live_after))
    # then the fast path does not start it again (the careful path defers it),
    assert second is None
    # but once the heartbeat is stale (the worker died) a delivery may take over.
    stale_after = utcnow() + dt.timedelta(seconds=1)
    assert writer.start(StartRun("m", "t_count", run_id, 10, None, stale_after)) is not None
    with db.session() as s:
        run = s.get(JobRun, run_id)
        assert run is not None and run.attempts == 2
