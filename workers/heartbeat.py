"""Liveness by heartbeat: a process touches a file while it can still do work.

Kubernetes' liveness probe (``tickwork probe liveness``) reads the file's age. It must not
fail because RabbitMQ or PostgreSQL is briefly down — Dramatiq reconnects by itself, and a
restart would only drop in-flight work — so the heartbeat asks only "are this process's
worker threads (or the scheduler loop) alive?", never "is the broker up?". Readiness is the
other question (``tickwork probe readiness``): can we reach the database and the broker now.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)


def beat(path: Path) -> None:
    """Touch the heartbeat file (created with its folder if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, None)


def age_s(path: Path, now: float | None = None) -> float | None:
    """Seconds since the last beat, or None if there never was one."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - mtime


class Heartbeat:
    """A daemon thread beating every ``interval_s`` while ``alive()`` says so."""

    def __init__(self, path: Path, interval_s: float, alive: Callable[[], bool]) -> None:
        self.path = path
        self.interval_s = interval_s
        self.alive = alive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tickwork-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.alive():
                    beat(self.path)
            except OSError:
                logger.exception("cannot write heartbeat file %s", self.path)
            self._stop.wait(self.interval_s)


class HeartbeatMiddleware(Middleware):
    """Starts a heartbeat in each worker process once its threads run; it stops beating
    when every worker thread has died (a wedged or crashed worker gets restarted)."""

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self._heartbeat: Heartbeat | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        def alive() -> bool:
            threads = list(getattr(worker, "workers", []))
            return bool(threads) and any(t.is_alive() for t in threads)

        self._heartbeat = Heartbeat(self.path, self.interval_s, alive)
        self._heartbeat.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
