"""The one way tests wait: :func:`wait_for` a condition, and the conditions several wait for."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path

import httpx


def wait_for(
    predicate: Callable[[], object],
    timeout_s: float,
    what: str,
    *,
    processes: Iterable[subprocess.Popen[str]] = (),
    poll_s: float = 0.1,
) -> float:
    """Poll ``predicate`` every ``poll_s`` until it is true; the seconds that took.

    Fails with ``what`` when ``timeout_s`` passes, or as soon as one of ``processes`` exits
    (the condition will never come then); either way with the tail of their output.
    """
    watched = list(processes)
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        exited = [p for p in watched if p.poll() is not None]
        if exited:
            raise AssertionError(f"{what}: {_states(watched)}{_tails(watched)}")
        if time.monotonic() - started > timeout_s:
            states = f"; {_states(watched)}" if watched else ""
            raise AssertionError(f"{what}: not within {timeout_s} s{states}{_tails(watched)}")
        time.sleep(poll_s)


def output_tail(proc: subprocess.Popen[str], chars: int = 3000) -> str:
    """The end of what ``proc`` wrote: its log file (see tests/support/processes.py), or
    the pipe it writes to."""
    output = getattr(proc, "output", None)
    if callable(output):
        return str(output())[-chars:]
    pipe = proc.stdout or proc.stderr
    if pipe is None or proc.poll() is None:  # reading a live process's pipe would block
        return ""
    return pipe.read()[-chars:]


def _states(procs: list[subprocess.Popen[str]]) -> str:
    return ", ".join(
        f"{_name(p)} {'alive' if p.poll() is None else f'exited {p.returncode}'}" for p in procs
    )


def _tails(procs: list[subprocess.Popen[str]]) -> str:
    return "".join(
        f"\n--- {_name(p)}, last lines:\n{tail}" for p in procs if (tail := output_tail(p))
    )


def _name(proc: subprocess.Popen[str]) -> str:
    log = getattr(proc, "log", None)
    return log.stem if isinstance(log, Path) else f"process {proc.pid}"


# --- conditions ------------------------------------------------------------------------


def heartbeat_recorded(database: Path) -> bool:
    """The embedded SQLite database at ``database`` holds a succeeded heartbeat run."""
    if not database.exists():  # sqlite3 would create an empty file where tickwork's goes
        return False
    try:
        with closing(sqlite3.connect(database)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM job_runs WHERE job_name='heartbeat' AND status='succeeded'"
            ).fetchone()
    except sqlite3.Error:  # not migrated yet, or locked by a writer
        return False
    return bool(row and row[0] >= 1)


def http_ok(url: str) -> bool:
    """``url`` answers 200 (False while nothing listens yet)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
