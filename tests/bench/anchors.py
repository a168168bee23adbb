"""The reference benchmarks of ../shared/bench, run as they are, in subprocesses of this
run, on the same RabbitMQ and PostgreSQL; their printed rates parsed.

Two kinds: broker references with no durable record per job (raw pika, bare Dramatiq,
Celery), and peers that keep one in PostgreSQL as tickwork's run records do (pgqueuer,
procrastinate, Celery with its database result backend). Each peer creates a fresh database
of its own on the server of ``pg_url`` and drops it when done; if one fails or times out,
any database of its name pattern it left behind is dropped here.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.bench.figures import Results

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Anchor:
    """One reference script: what it is, and how its output becomes figures."""

    script: str
    what: str
    measure: Callable[[Results, int, int, str, str], None]


def anchor_dir(scripts: tuple[str, ...] = ()) -> Path:
    """``../shared/bench`` beside the checkout, or ``TICKWORK_BENCH_ANCHORS``; checked to
    hold ``scripts`` (default: all of :data:`ANCHORS`)."""
    folder = Path(os.environ.get("TICKWORK_BENCH_ANCHORS") or REPO_ROOT.parent / "shared" / "bench")
    wanted = scripts or tuple(a.script for a in ANCHORS.values())
    missing = [s for s in wanted if not (folder / s).exists()]
    if missing:
        raise FileNotFoundError(
            f"reference benchmarks not found in {folder} (missing {', '.join(missing)}): set "
            "TICKWORK_BENCH_ANCHORS to the folder holding them"
        )
    return folder


def _run(
    script: str,
    *args: str,
    amqp_url: str,
    pg_url: str | None = None,
    db_prefix: str | None = None,
    timeout_s: float = 900,
) -> str:
    """Run ``script`` in its own process group (it may start workers of its own) and return
    its stdout; on failure or timeout, the whole group is killed and any database named
    ``db_prefix…`` that appeared meanwhile is dropped."""
    env = {**os.environ, "AMQP_URL": amqp_url}
    if pg_url is not None:
        env["PG_URL"] = pg_url
    before = _databases(pg_url, db_prefix)
    proc = subprocess.Popen(
        [sys.executable, script, *args],
        cwd=anchor_dir((script,)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        _drop_new_databases(pg_url, db_prefix, before)
        raise RuntimeError(f"{script} timed out after {timeout_s:.0f} s: {err[-2000:]}") from None
    if proc.returncode != 0:
        _kill_group(proc)  # a worker it started may have outlived it
        _drop_new_databases(pg_url, db_prefix, before)
        raise RuntimeError(f"{script} failed ({proc.returncode}): {err[-2000:]}")
    return out


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _databases(pg_url: str | None, prefix: str | None) -> set[str]:
    if pg_url is None or prefix is None:
        return set()
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
        ).fetchall()
    return {row[0] for row in rows}


def _drop_new_databases(pg_url: str | None, prefix: str | None, before: set[str]) -> None:
    if pg_url is None or prefix is None:
        return
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name in sorted(_databases(pg_url, prefix) - before):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rate(output: str, label: str, exact: bool = False) -> float:
    """The msg/s figure printed after ``label`` (e.g. ``drain`` in ``drain 2000 msg/s``).

    Unless ``exact``, a parenthesised note after the label is allowed (``drain(incl. worker
    start) 2000 msg/s`` answers ``drain``); with ``exact`` it is not, so ``drain`` and
    ``drain(incl. worker start)`` are told apart whichever comes first.
    """
    note = "" if exact else r"(?:\([^)]*\))?"
    found = re.search(
        r"(?<![\w(])" + re.escape(label) + note + r"\s+(\d+(?:\.\d+)?)\s+msg/s", output
    )
    if found is None:
        raise ValueError(f"no {label!r} rate in reference output: {output.strip()!r}")
    return float(found.group(1))


# --- brokers: no durable record per job ----------------------------------------------------
def measure_pika(results: Results, n: int, threads: int, amqp_url: str, pg_url: str) -> None:
    out = _run("anchor_pika.py", str(n), amqp_url=amqp_url)
    results.add("raw pika publish", "msg/s", rate(out, "publish"))
    results.add("raw pika consume+ack", "msg/s", rate(out, "consume+ack"))


def measure_dramatiq(results: Results, n: int, threads: int, amqp_url: str, pg_url: str) -> None:
    out = _run("anchor_dramatiq.py", str(n), str(threads), amqp_url=amqp_url)
    results.add("bare Dramatiq enqueue", "msg/s", rate(out, "enqueue"))
    results.add("bare Dramatiq drain", "msg/s", rate(out, "drain"))


def measure_celery(results: Results, n: int, threads: int, amqp_url: str, pg_url: str) -> None:
    out = _run("anchor_celery.py", str(n), amqp_url=amqp_url)
    results.add("Celery enqueue", "msg/s", rate(out, "enqueue"))
    results.add("Celery drain (incl. worker start)", "msg/s", rate(out, "drain"))


# --- peers: a durable record per job in PostgreSQL -----------------------------------------
def _peer(script: str, n: int, threads: int, amqp_url: str, pg_url: str) -> str:
    prefix = script.removesuffix(".py") + "_"
    args = ("--messages", str(n), "--threads", str(threads))
    return _run(script, *args, amqp_url=amqp_url, pg_url=pg_url, db_prefix=prefix)


def measure_pgqueuer(results: Results, n: int, threads: int, amqp_url: str, pg_url: str) -> None:
    out = _peer("anchor_pgqueuer.py", n, threads, amqp_url, pg_url)
    results.add("pgqueuer enqueue (one by one)", "msg/s", rate(out, "enqueue(one-by-one)", True))
    results.add("pgqueuer enqueue (batches)", "msg/s", rate(out, "enqueue(batch)", True))
    results.add("pgqueuer drain", "msg/s", rate(out, "drain", True))


def measure_procrastinate(
    results: Results, n: int, threads: int, amqp_url: str, pg_url: str
) -> None:
    out = _peer("anchor_procrastinate.py", n, threads, amqp_url, pg_url)
    results.add(
        "procrastinate enqueue (one by one)", "msg/s", rate(out, "enqueue(one-by-one)", True)
    )
    results.add("procrastinate enqueue (batches)", "msg/s", rate(out, "enqueue(batch)", True))
    results.add("procrastinate drain", "msg/s", rate(out, "drain", True))


def measure_celery_db(results: Results, n: int, threads: int, amqp_url: str, pg_url: str) -> None:
    out = _peer("anchor_celery_db.py", n, threads, amqp_url, pg_url)
    results.add("Celery + DB results enqueue", "msg/s", rate(out, "enqueue", True))
    results.add("Celery + DB results drain", "msg/s", rate(out, "drain", True))
    results.add(
        "Celery + DB results drain (incl. worker start)",
        "msg/s",
        rate(out, "drain(incl. worker start)", True),
    )


ANCHORS: dict[str, Anchor] = {
    "pika": Anchor("anchor_pika.py", "raw pika publish and consume+ack", measure_pika),
    "dramatiq": Anchor("anchor_dramatiq.py", "bare Dramatiq, no-op actor", measure_dramatiq),
    "celery": Anchor("anchor_celery.py", "Celery, no result backend", measure_celery),
    "pgqueuer": Anchor("anchor_pgqueuer.py", "PgQueuer, jobs in PostgreSQL", measure_pgqueuer),
    "procrastinate": Anchor(
        "anchor_procrastinate.py", "procrastinate, jobs in PostgreSQL", measure_procrastinate
    ),
    "celery-db": Anchor(
        "anchor_celery_db.py",
        "Celery on RabbitMQ + SQLAlchemy result backend in PostgreSQL",
        measure_celery_db,
    ),
}
