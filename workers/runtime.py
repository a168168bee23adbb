"""The process-wide handles a worker needs: settings, database, broker.

Built once per process from the environment (worker processes are forked by the
Dramatiq CLI and import :mod:`workers.app`), or installed explicitly by tests and
by the embedded ``tickwork run``.
"""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq

from schema.engine import Database
from tickwork.settings import Settings, load_settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    broker: dramatiq.Broker


_runtime: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        from workers.app import build_runtime

        _runtime = build_runtime(load_settings())
    return _runtime
