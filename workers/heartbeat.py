"""Liveness by heartbeat: a process touches a file while it can still do work.

Kubernetes' liveness probe (``tickwork probe liveness``) reads the file's age. It must not
fail because RabbitMQ or PostgreSQL is briefly down — Dramatiq reconnects by itself, and a
restart would only drop in-flight work — so the heartbeat asks only "are this process's
worker threads (or the scheduler loop) alive?", never "is the broker up?". Readiness is the
other question (``tickwork probe readiness``): can we reach the database and the broker now.

Under systemd (``Type=notify``, deploy/systemd/) the same heartbeat is the watchdog: each
beat also sends ``WATCHDOG=1`` (and, once the process serves, ``READY=1`` a single time) by
:mod:`tickwork.sd_notify` — a no-op when systemd did not start the process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import Middleware

from tickwork import sd_notify

if TYPE_CHECKING:
    from tickwork.settings import Settings

logger = logging.getLogger(__name__)


def heartbeat_path(settings: Settings, role: str) -> Path:
    """The heartbeat file of a ``role`` process (worker, scheduler, run).

    ``TICKWORK_HEARTBEAT_FILE`` when set; otherwise a file of its own per data dir and
    role in the temp dir, so another tickwork on the same host (another data dir, or the
    other role) can never keep this process's liveness fresh. The temp dir, not the data
    dir: a production data dir may be read-only, the temp dir is writable everywhere
    tickwork runs (the Kubernetes manifests mount one).
    """
    if settings.heartbeat_file is not None:
        return settings.heartbeat_file
    data_dir = str(settings.data_dir.expanduser().resolve())
    digest = hashlib.sha256(data_dir.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tickwork-heartbeat-{role}-{digest}"


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
    """A daemon thread beating every ``interval_s`` while ``alive()`` says so.

    Each beat touches ``path`` (Kubernetes' liveness probe reads its age) and sends systemd
    ``WATCHDOG=1`` (when the watchdog is this process's); the two answer the same question,
    so a file that cannot be written (logged once) does not stop the watchdog. With
    ``ready``, the first beat at which ``ready()`` is true also sends ``READY=1``; until
    then the thread looks every 0.2 s, so readiness is not an interval late.
    """

    def __init__(
        self,
        path: Path,
        interval_s: float,
        alive: Callable[[], bool],
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.alive = alive
        self.ready = ready
        self._ready_sent = ready is None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tickwork-heartbeat", daemon=True)

    def start(self) -> None:
        usec = sd_notify.watchdog_usec()
        if usec is not None and self.interval_s > usec / 2e6:
            logger.warning(
                "TICKWORK_HEARTBEAT_INTERVAL_S=%g is more than half of systemd's WatchdogSec "
                "(%g s): a late beat will get this service killed; lower it",
                self.interval_s,
                usec / 1e6,
            )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            if self.alive():
                self._tell_systemd()
                try:
                    beat(self.path)
                    if failing:
                        logger.info("heartbeat file %s written again", self.path)
                    failing = False
                except OSError as exc:
                    if not failing:  # once, not every interval: liveness probes will fail
                        logger.error("cannot write heartbeat file %s: %s", self.path, exc)
                    failing = True
            self._stop.wait(self.interval_s if self._ready_sent else min(self.interval_s, 0.2))

    def _tell_systemd(self) -> None:
        sd_notify.watchdog()
        if not self._ready_sent and self.ready is not None and self.ready():
            self._ready_sent = True
            sd_notify.ready()


class HeartbeatMiddleware(Middleware):
    """Starts a heartbeat in each worker process once its threads run; it stops beating
    when every worker thread has died (a wedged or crashed worker gets restarted).

    ``path`` is a file, or a function giving it when the worker boots: the default file
    depends on the process role (``worker`` for `tickwork worker`, ``run`` for `tickwork
    run`), known only once the process has started."""

    def __init__(self, path: Path | Callable[[], Path | None], interval_s: float) -> None:
        self._path = path
        self.interval_s = interval_s
        self._heartbeat: Heartbeat | None = None

    @property
    def path(self) -> Path | None:
        """The file to beat, or None: no heartbeat in this process."""
        return self._path if isinstance(self._path, Path) else self._path()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        def alive() -> bool:
            threads = list(getattr(worker, "workers", []))
            return bool(threads) and any(t.is_alive() for t in threads)

        def consuming() -> bool:
            # Ready for systemd: every queue's consumer thread has its consumer, i.e. has
            # declared its queue and sent basic.consume (Dramatiq connects them after boot).
            consumers = list(getattr(worker, "consumers", {}).values())
            return bool(consumers) and all(
                getattr(c, "consumer", None) is not None for c in consumers
            )

        path = self.path
        if path is None:
            return
        logger.info("liveness heartbeat: %s, every %g s", path, self.interval_s)
        self._heartbeat = Heartbeat(path, self.interval_s, alive, ready=consuming)
        self._heartbeat.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            sd_notify.stopping("finishing running jobs")
