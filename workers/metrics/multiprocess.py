"""Prometheus multiprocess mode for ``tickwork worker`` and ``tickwork scheduler``.

prometheus_client decides once, when it is first imported, whether metric values live
in memory or in files under ``PROMETHEUS_MULTIPROC_DIR``; Dramatiq's Prometheus
middleware reads ``dramatiq_prom_db`` when *it* is imported. Both must therefore be
set before either import, in the parent process, so every forked worker process
inherits them. Files left by processes that are gone (a previous run, a SIGKILLed
pod) are not wiped by either library, and would be summed into today's counters:
:func:`configure_multiprocess` wipes them first.

Each ``tickwork worker`` / ``tickwork scheduler`` process tree gets its own
directory (``<base>/<role>-<pid>``), so two process trees on one host never wipe or
merge each other's files; directories of process trees that are no longer alive are
removed at start.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)

ENV_VARS = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir", "dramatiq_prom_db")


def default_base_dir() -> Path:
    return Path(tempfile.gettempdir()) / "tickwork-metrics"


def configure_multiprocess(role: str, base_dir: Path | None = None) -> Path:
    """Point prometheus_client and Dramatiq at a fresh directory for this process tree.

    Must run before ``prometheus_client`` is imported; raises RuntimeError otherwise,
    because metrics created earlier would silently stay per-process.
    """
    if "prometheus_client" in sys.modules and not is_multiprocess():
        raise RuntimeError(
            "prometheus_client was imported before the multiprocess directory was set: "
            "call configure_multiprocess() first thing in the process"
        )
    base = base_dir or default_base_dir()
    base.mkdir(parents=True, exist_ok=True)
    _remove_dead_siblings(base, role)
    directory = base / f"{role}-{os.getpid()}"
    if directory.exists():
        shutil.rmtree(directory)  # a recycled pid: its files belong to a dead process
    directory.mkdir()
    for name in ENV_VARS:
        os.environ[name] = str(directory)
    logger.debug("prometheus multiprocess directory: %s", directory)
    return directory


def _remove_dead_siblings(base: Path, role: str) -> None:
    for path in base.glob(f"{role}-*"):
        pid_text = path.name.removeprefix(f"{role}-")
        if not pid_text.isdigit() or not _alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def multiprocess_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def is_multiprocess() -> bool:
    """True when prometheus_client writes values to files (shared across processes)."""
    if multiprocess_dir() is None:
        return False
    if "prometheus_client" not in sys.modules:
        return True
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def dramatiq_prometheus() -> Middleware:
    """Dramatiq's Prometheus middleware, minus its own HTTP server on port 9191.

    Its metrics land in the multiprocess directory and are served, with tickwork's,
    on ``metrics_port`` by :mod:`workers.metrics.exposition` — one port per process.
    """
    from dramatiq.middleware.prometheus import Prometheus

    class DramatiqPrometheus(Prometheus):
        @property
        def forks(self) -> list[Any]:
            return []

    middleware: Middleware = DramatiqPrometheus()
    return middleware
