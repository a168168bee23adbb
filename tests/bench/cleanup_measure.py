"""Batched cleanup of N expired sessions among N live ones vs one raw DELETE (issue 6/10).

Both run on the same freshly loaded, vacuumed table in this run's own database. Figures:
time of each, the longest single transaction of the batched cleanup, and the peak RSS of
this process while it ran (sampled from /proc every 10 ms).
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from sqlalchemy import Table

from schema.base import utcnow
from schema.engine import Database
from schema.identity import Session
from tests.bench.figures import Results
from tests.bench.measures import BenchEnv
from workers.batching import delete_in_batches

SESSIONS = cast(Table, Session.__table__)


def _load(db: Database, rows: int) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE sessions RESTART IDENTITY CASCADE")
        conn.exec_driver_sql(
            "INSERT INTO sessions (session_key_hash, expires_at, created_at) "
            "SELECT md5(g::text), now() + CASE WHEN g %% 2 = 0 THEN interval '-1 day' "
            "ELSE interval '1 day' END, now() FROM generate_series(1, %(n)s) g",
            {"n": rows * 2},
        )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE sessions")


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure_cleanup(results: Results, env: BenchEnv, rows: int) -> None:
    db = Database(env.settings())
    try:
        _load(db, rows)
        started = time.perf_counter()
        with db.engine.begin() as conn:
            raw = conn.exec_driver_sql("DELETE FROM sessions WHERE expires_at < now()").rowcount
        raw_s = time.perf_counter() - started
        assert raw == rows, f"raw DELETE removed {raw} rows, expected {rows}"

        _load(db, rows)
        peak = [_rss_mib()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                peak[0] = max(peak[0], _rss_mib())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        stats: Any = delete_in_batches(
            db, SESSIONS, SESSIONS.c.expires_at < utcnow(), db.settings.cleanup_batch_size
        )
        batched_s = time.perf_counter() - started
        done.set()
        sampler.join()
        assert stats.rows == rows, f"batched cleanup removed {stats.rows} rows, expected {rows}"
    finally:
        db.dispose()
    results.add("batched cleanup of expired rows", "s", batched_s, False)
    results.add("raw DELETE of expired rows", "s", raw_s, False)
    results.add("longest cleanup transaction", "s", stats.longest_transaction_s, False)
    results.add("cleanup peak RSS", "MiB", peak[0], False)
