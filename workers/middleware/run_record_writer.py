"""Group commit for run records: the starts and finishes of every worker thread of a
process are written together, a few statements per batch instead of two per message.

Each worker thread hands its write to the writer and waits for it: a run's start is
recorded before the job runs, and its outcome is durable before the message is acked,
exactly as with one statement per message. While one batch is at the database the next
one gathers, so under load a batch holds about as many writes as there are threads,
and the round trips and commits (fsyncs) per message fall by that factor. When the
queue is idle a batch is a single write and nothing waits longer than before.

On PostgreSQL a batch is one ``UPDATE ... FROM (VALUES ...) RETURNING`` or one multi-row
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` in autocommit. On SQLite (embedded) the
writes of a batch run one by one, from this single writer thread.
"""

from __future__ import annotations

import _thread
import datetime as dt
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Table, case, func, literal
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import configure_mappers

from schema.base import utcnow
from schema.engine import Database
from schema.scheduling import FINISHED_STATUSES, JobRun

logger = logging.getLogger(__name__)

RUNS = cast(Table, JobRun.__table__)
Started = tuple[int, str, dt.datetime | None]  # run id, job name, slot
MAX_BATCH = 64
WRITER_THREADS = 1
IDLE_EXIT_S = 10.0  # an idle writer thread ends; the next write starts another
_RETRY_DELAYS_S = (0.5, 1, 2, 4, 8, 8)  # about 30 s: a database restart


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class StartRun:
    """Mark run ``run_id`` started, or create a run for a plain message (``run_id`` None)."""

    message_id: str
    actor_name: str
    run_id: int | None
    redelivery_limit: int
    sent_at: dt.datetime | None
    # A running run whose heartbeat is newer than this is executing elsewhere right now.
    live_after: dt.datetime


@dataclass
class FinishRun:
    run_id: int
    values: dict[str, Any]
    # Jobs to queue if this outcome is a success (the job's ``then``): inserted in the
    # same statement/transaction as the outcome, keyed ``after:<run id>`` per job, so a
    # redelivered message or a second process can never queue a chained run twice.
    then: tuple[str, ...] = ()


Completion = Callable[[Any, "BaseException | None"], None]


class _Request:
    """One write handed to the writer thread; completed once its batch is committed."""

    __slots__ = ("_waiter", "error", "finished", "on_done", "result", "write")

    def __init__(self, write: StartRun | FinishRun, on_done: Completion | None = None) -> None:
        self.write = write
        self.result: Any = None
        self.error: BaseException | None = None
        self.on_done = on_done  # called on the writer thread once committed
        self.finished = False
        self._waiter: Any = None
        if on_done is None:  # a thread will wait: a held lock is the cheapest one-shot event
            self._waiter = _thread.allocate_lock()
            self._waiter.acquire()

    def wait(self) -> None:
        self._waiter.acquire()

    def complete(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.finished = result, error, True
        if self._waiter is not None:
            self._waiter.release()
        if self.on_done is not None:
            try:
                self.on_done(result, error)
            except Exception:  # a callback must never stop the writer
                logger.exception("run-record completion callback failed")


class RunRecordWriter:
    """One per process and database; thread-safe; the writer thread starts on first use."""

    def __init__(self, db: Database, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._lock = threading.Lock()
        self._threads = 0  # writer threads running (each on its own connection)
        self._pid = 0
        self._outstanding = 0  # writes handed over and not yet completed
        self._idle = threading.Condition()
        self.batches = 0  # for tests and benchmarks: how many database batches ran
        self.writes = 0

    # --- what worker threads call -------------------------------------------------------
    def start(self, write: StartRun) -> Started | None:
        """The started run, or None when the fast path cannot decide (finished, looping
        on dead workers, or missing): the caller then takes the careful path."""
        return cast("Started | None", self._submit(write))

    def finish(self, write: FinishRun) -> JobRun:
        """Record the outcome; returns the run as stored (detached)."""
        return cast(JobRun, self._submit(write))

    def finish_later(self, write: FinishRun, on_done: Completion) -> None:
        """Record the outcome without waiting: ``on_done(run, error)`` is called on the
        writer thread once the batch holding it is committed (or has failed)."""
        self._enqueue(_Request(write, on_done=on_done))

    def flush(self, timeout_s: float) -> bool:
        """Wait until every write handed over so far is done; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout_s)

    def _submit(self, write: StartRun | FinishRun) -> Any:
        request = _Request(write)
        self._enqueue(request)
        request.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _enqueue(self, request: _Request) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # Dramatiq forks worker processes: a thread started before the fork is
                # not in the child, so each process starts its own.
                self._queue, self._threads, self._pid = queue.Queue(), 0, os.getpid()
                self._outstanding, self._idle = 0, threading.Condition()
            with self._idle:
                self._outstanding += 1
            self._queue.put(request)
            # A second writer gathers the next batch while the first waits for its commit
            # (PostgreSQL flushes concurrent commits together).
            wanted = WRITER_THREADS if self.db.is_postgresql else 1
            if self._threads < wanted and (self._threads == 0 or self._queue.qsize() > 1):
                self._threads += 1
                threading.Thread(target=self._run, name="tickwork-run-records", daemon=True).start()

    # --- the writer thread ------------------------------------------------------------
    def _run(self) -> None:
        pending = self._queue
        while True:
            try:
                first = pending.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:  # submitters put under this lock: no request is stranded
                    if pending.empty():
                        self._threads -= 1
                        return
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except BaseException as exc:  # never let the writer die: fail the batch
                logger.exception("run-record batch failed")
                for request in batch:
                    if not request.finished:
                        self._complete(request, error=exc)

    def _complete(
        self, request: _Request, result: Any = None, error: BaseException | None = None
    ) -> None:
        request.complete(result, error)
        with self._idle:
            self._outstanding -= 1
            if self._outstanding == 0:
                self._idle.notify_all()

    def _write(self, batch: list[_Request]) -> None:
        # Two writes for the same run never share a statement: the later waits a batch.
        seen: set[Any] = set()
        now_batch: list[_Request] = []
        later: list[_Request] = []
        for request in batch:
            key = _key(request.write)
            (later if key in seen else now_batch).append(request)
            seen.add(key)
        groups: dict[str, list[_Request]] = {"update": [], "insert": [], "finish": []}
        for request in now_batch:
            write = request.write
            if isinstance(write, FinishRun):
                groups["finish"].append(request)
            else:
                groups["update" if write.run_id is not None else "insert"].append(request)
        if not (self.db.is_postgresql and len(now_batch) > 1 and self._in_one_transaction(groups)):
            for kind, requests in groups.items():
                if requests:
                    self._execute(requests, _STATEMENTS[kind])
        self.batches += 1
        self.writes += len(now_batch)
        for request in later:
            self._queue.put(request)

    def _in_one_transaction(self, groups: dict[str, list[_Request]]) -> bool:
        """PostgreSQL: every statement of the batch in one transaction, so one commit (one
        WAL flush) per batch instead of one per statement. False when the batch must be
        retried statement by statement (one bad write must not fail the others)."""

        def write_all() -> dict[str, list[Any]]:
            with self.db.statement() as connection, _driver(connection).transaction():
                return {
                    kind: _STATEMENTS[kind](connection, [r.write for r in requests])
                    for kind, requests in groups.items()
                    if requests
                }

        try:
            results = _with_retries(write_all)
        except OperationalError as exc:
            for requests in groups.values():
                for request in requests:
                    self._complete(request, error=exc)
            return True
        except Exception:
            logger.warning("run-record batch refused; writing it statement by statement")
            return False
        for kind, requests in groups.items():
            for request, result in zip(requests, results.get(kind, []), strict=True):
                self._complete(request, result)
        return True

    def _execute(
        self, requests: list[_Request], statement: Callable[[Connection, Sequence[Any]], list[Any]]
    ) -> None:
        writes = [r.write for r in requests]
        batched = self.db.is_postgresql and len(writes) > 1
        try:
            if batched:
                results = _with_retries(lambda: self._in_db(statement, writes))
            else:
                results = [self._one(statement, w) for w in writes]
        except OperationalError as exc:
            for request in requests:
                self._complete(request, error=exc)
            return
        except Exception:
            if not batched:
                raise
            # One bad write must not fail the others: retry them one by one.
            for request in requests:
                try:
                    result = self._one(statement, request.write)
                except Exception as exc:
                    self._complete(request, error=exc)
                else:
                    self._complete(request, result)
            return
        for request, result in zip(requests, results, strict=True):
            self._complete(request, result)

    def _one(self, statement: Callable[[Connection, Sequence[Any]], list[Any]], write: Any) -> Any:
        return _with_retries(lambda: self._in_db(statement, [write])[0])

    def _in_db(
        self, statement: Callable[[Connection, Sequence[Any]], list[Any]], writes: Sequence[Any]
    ) -> list[Any]:
        with self.db.statement() as connection:
            return statement(connection, writes)


def _key(write: StartRun | FinishRun) -> Any:
    if isinstance(write, FinishRun):
        return ("run", write.run_id)
    return ("run", write.run_id) if write.run_id is not None else ("message", write.message_id)


def _with_retries(fn: Callable[[], Any]) -> Any:
    """Retry while the database restarts (about 30 s in all); then raise."""
    for attempt, delay_s in enumerate((*_RETRY_DELAYS_S, None)):
        try:
            return fn()
        except OperationalError:
            if delay_s is None:
                logger.exception("run records: database unreachable, giving up")
                raise
            logger.warning("run records: database unreachable (attempt %s), retrying", attempt + 1)
            time.sleep(delay_s)
    raise AssertionError("unreachable")


_STARTED = (RUNS.c.id, RUNS.c.job_name, RUNS.c.scheduled_for)


# --- the statements -----------------------------------------------------------------
# PostgreSQL: constant SQL over unnest()ed arrays, whatever the batch size, so psycopg
# prepares each statement once and SQLAlchemy compiles nothing per batch (compiling a
# VALUES list per batch cost more CPU than the database work). SQLite: Core, row by row.
_FINISHED = ", ".join(f"'{status}'" for status in FINISHED_STATUSES)
_COLUMNS = [c.name for c in RUNS.c]
_RETURN_ALL = ", ".join(f"r.{name}" for name in _COLUMNS)
_PG_START_EXISTING = f"""
UPDATE job_runs AS r
SET status = 'running', started_at = %(now)s, heartbeat_at = %(now)s,
    attempts = r.attempts + 1, worker = %(worker)s,
    message_id = coalesce(r.message_id, v.message_id)
FROM unnest(%(ids)s::bigint[], %(message_ids)s::text[], %(limits)s::integer[],
            %(live_after)s::timestamptz[])
     AS v(id, message_id, lim, live_after)
WHERE r.id = v.id AND r.status NOT IN ({_FINISHED})
  AND NOT (r.status = 'running' AND r.attempts >= v.lim)
  AND NOT (r.status = 'running' AND r.heartbeat_at IS NOT NULL
           AND r.heartbeat_at > v.live_after)
RETURNING r.id, r.job_name, r.scheduled_for
"""
_PG_START_NEW = """
INSERT INTO job_runs (job_name, trigger, message_id, status, queued_at, started_at,
                      heartbeat_at, attempts, records_processed, output, worker)
SELECT v.job_name, 'message', v.message_id, 'running', coalesce(v.sent_at, %(now)s),
       %(now)s, %(now)s, 1, 0, '', %(worker)s
FROM unnest(%(job_names)s::text[], %(message_ids)s::text[], %(sent_at)s::timestamptz[])
     AS v(job_name, message_id, sent_at)
ON CONFLICT DO NOTHING
RETURNING message_id, id, job_name, scheduled_for
"""
_PG_FINISH = f"""
WITH done AS (
UPDATE job_runs AS r
SET status = CASE WHEN r.cancel_requested_at IS NULL THEN v.status ELSE 'canceled' END,
    skip_reason = v.skip_reason, records_processed = v.records, output = v.output,
    error = v.error,
    finished_at = CASE WHEN r.cancel_requested_at IS NULL THEN v.finished_at
                       ELSE coalesce(v.finished_at, %(now)s) END
FROM unnest(%(ids)s::bigint[], %(status)s::text[], %(skip_reason)s::text[],
            %(records)s::integer[], %(output)s::text[], %(error)s::text[],
            %(finished_at)s::timestamptz[])
     AS v(id, status, skip_reason, records, output, error, finished_at)
WHERE r.id = v.id
RETURNING {_RETURN_ALL}
), chained AS (
INSERT INTO job_runs (job_name, entry, trigger, status, queued_at, attempts,
                      records_processed, output, triggered_by, idempotency_key)
SELECT c.job_name, '', 'chain', 'queued', %(now)s, 0, 0, '', d.id, 'after:' || d.id
FROM done AS d
JOIN unnest(%(parents)s::bigint[], %(children)s::text[]) AS c(parent, job_name)
  ON c.parent = d.id
WHERE d.status = 'succeeded'
ON CONFLICT DO NOTHING
)
SELECT * FROM done AS r
"""


def _driver(connection: Connection) -> Any:
    """The psycopg connection under SQLAlchemy's: the writer's statements are constant
    SQL over arrays, so they skip SQLAlchemy's per-statement work (a large part of a
    batch's CPU) and are prepared once by psycopg."""
    return connection.connection.driver_connection


def _run_pg(connection: Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    try:
        with _driver(connection).cursor() as cursor:
            rows: list[Any] = cursor.execute(sql, params, prepare=True).fetchall()
            return rows
    except psycopg.OperationalError as exc:  # retried like SQLAlchemy's (database restart)
        raise OperationalError(sql[:60], None, exc) from exc


def _start_existing(connection: Connection, writes: Sequence[StartRun]) -> list[Started | None]:
    """Mark runs started unless finished, given up on, or alive on another delivery;
    one UPDATE for the batch."""
    now = utcnow()
    if connection.dialect.name == "postgresql":
        rows = _run_pg(
            connection,
            _PG_START_EXISTING,
            {
                "now": now,
                "worker": worker_name(),
                "ids": [w.run_id for w in writes],
                "message_ids": [w.message_id for w in writes],
                "limits": [w.redelivery_limit for w in writes],
                "live_after": [w.live_after for w in writes],
            },
        )
        found = {row[0]: (row[0], row[1], _utc(row[2])) for row in rows}
        return [found.get(cast(int, w.run_id)) for w in writes]
    out: list[Started | None] = []
    for w in writes:
        stmt = (
            RUNS.update()
            .where(
                RUNS.c.id == w.run_id,
                RUNS.c.status.not_in(FINISHED_STATUSES),
                ~((RUNS.c.status == "running") & (RUNS.c.attempts >= w.redelivery_limit)),
                ~(
                    (RUNS.c.status == "running")
                    & RUNS.c.heartbeat_at.is_not(None)
                    & (RUNS.c.heartbeat_at > w.live_after)
                ),
            )
            .values(
                status="running",
                started_at=now,
                heartbeat_at=now,
                attempts=RUNS.c.attempts + 1,
                worker=worker_name(),
                message_id=func.coalesce(RUNS.c.message_id, w.message_id),
            )
            .returning(*_STARTED)
        )
        row = connection.execute(stmt).one_or_none()
        out.append(None if row is None else (row[0], row[1], row[2]))
    return out


def _start_new(connection: Connection, writes: Sequence[StartRun]) -> list[Started | None]:
    """Create started runs for plain messages; a message seen before is left alone."""
    now = utcnow()
    if connection.dialect.name == "postgresql":
        rows = _run_pg(
            connection,
            _PG_START_NEW,
            {
                "now": now,
                "worker": worker_name(),
                "job_names": [w.actor_name for w in writes],
                "message_ids": [w.message_id for w in writes],
                "sent_at": [w.sent_at for w in writes],
            },
        )
        found = {row[0]: (row[1], row[2], _utc(row[3])) for row in rows}
        return [found.get(w.message_id) for w in writes]
    out: list[Started | None] = []
    for w in writes:
        stmt = (
            sqlite.insert(RUNS)
            .values(
                job_name=w.actor_name,
                trigger="message",
                message_id=w.message_id,
                status="running",
                queued_at=w.sent_at or now,
                started_at=now,
                heartbeat_at=now,
                attempts=1,
                records_processed=0,
                output="",
                worker=worker_name(),
            )
            .on_conflict_do_nothing()
            .returning(*_STARTED)
        )
        row = connection.execute(stmt).one_or_none()
        out.append(None if row is None else (row[0], row[1], row[2]))
    return out


def _finish(connection: Connection, writes: Sequence[FinishRun]) -> list[JobRun]:
    """Record outcomes; one UPDATE for the batch. Returns detached runs for the hooks.
    A run an operator asked to cancel ends ``canceled``, however the job ended (even
    re-queued for a retry: its redelivery then finds it finished and drops it)."""
    if connection.dialect.name == "postgresql":
        rows = _run_pg(
            connection,
            _PG_FINISH,
            {
                "now": utcnow(),
                "ids": [w.run_id for w in writes],
                "status": [w.values["status"] for w in writes],
                "skip_reason": [w.values.get("skip_reason") for w in writes],
                "records": [w.values.get("records_processed", 0) for w in writes],
                "output": [w.values.get("output", "") for w in writes],
                "error": [w.values.get("error") for w in writes],
                "finished_at": [w.values.get("finished_at") for w in writes],
                "parents": [w.run_id for w in writes for _child in w.then],
                "children": [child for w in writes for child in w.then],
            },
        )
        runs = {
            run.id: run for run in (_detached_run(zip(_COLUMNS, row, strict=True)) for row in rows)
        }
        return [runs[w.run_id] for w in writes]
    out = []
    for w in writes:
        values = dict(w.values)
        requested = RUNS.c.cancel_requested_at.is_(None)
        values["status"] = case((requested, values["status"]), else_="canceled")
        at = RUNS.c.finished_at.type
        values["finished_at"] = case(
            (requested, literal(values.get("finished_at"), at)),
            else_=func.coalesce(literal(values.get("finished_at"), at), literal(utcnow(), at)),
        )
        stmt = RUNS.update().where(RUNS.c.id == w.run_id).values(**values)
        row = connection.execute(stmt.returning(*RUNS.c)).one()
        if row.status == "succeeded":  # same transaction as the outcome (engine.begin)
            queue_chained(connection, row.id, w.then)
        out.append(_detached_run(row._asdict().items()))
    return out


def queue_chained(connection: Connection, parent_id: int, children: Sequence[str]) -> None:
    """Queue the chained runs of a succeeded run, each at most once (its key)."""
    for child in children:
        connection.execute(
            sqlite.insert(RUNS)
            .values(
                job_name=child,
                entry="",
                trigger="chain",
                status="queued",
                queued_at=utcnow(),
                attempts=0,
                records_processed=0,
                output="",
                triggered_by=parent_id,
                idempotency_key=f"after:{parent_id}",
            )
            .on_conflict_do_nothing()
        )


_RUN_MANAGER = JobRun._sa_class_manager  # type: ignore[attr-defined]


def _detached_run(columns: Iterable[tuple[str, Any]]) -> JobRun:
    """A detached JobRun holding a returned row's ``(column, value)`` pairs, times in UTC,
    as the ORM builds one when it loads a row (its constructor's per-attribute events
    cost more than the database write)."""
    values = {
        name: _utc(value) if isinstance(value, dt.datetime) else value for name, value in columns
    }
    if not _RUN_MANAGER.mapper.configured:
        configure_mappers()
    run: JobRun = _RUN_MANAGER.new_instance()
    run.__dict__.update(values)
    return run


def fail_unstarted(db: Database, run_id: int, error: str) -> JobRun | None:
    """Fail a run that never started (its message was dropped or refused); the run as
    stored, or None when it had already moved on (finished, or running elsewhere)."""
    stmt = (
        RUNS.update()
        .where(RUNS.c.id == run_id, RUNS.c.status == "queued")
        .values(status="failed", error=error, finished_at=utcnow())
        .returning(*RUNS.c)
    )
    with db.statement() as connection:
        row = connection.execute(stmt).one_or_none()
    if row is None:
        return None
    return _detached_run(row._asdict().items())


_STATEMENTS: dict[str, Callable[[Connection, Sequence[Any]], list[Any]]] = {
    "update": _start_existing,
    "insert": _start_new,
    "finish": _finish,
}


def beat_runs(db: Database, run_ids: Sequence[int]) -> int:
    """Refresh the heartbeat of runs this process is executing; how many were running."""
    if not run_ids:
        return 0
    stmt = (
        RUNS.update()
        .where(RUNS.c.id.in_(list(run_ids)), RUNS.c.status == "running")
        .values(heartbeat_at=utcnow())
    )
    with db.statement() as connection:
        return connection.execute(stmt).rowcount


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.UTC)
