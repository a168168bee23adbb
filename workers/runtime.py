"""The process-wide handles a worker needs: settings, database, broker.

Built once per process by the composition root, :func:`workers.app.build_runtime`
(worker processes forked by the Dramatiq CLI call ``workers.app:setup``; the embedded
``tickwork run`` and the tests call it directly). Asking for it before is an error,
not a lazy build: what a process runs is decided in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq

from schema.engine import Database
from tickwork.settings import Settings


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
    """The runtime :func:`workers.app.build_runtime` installed; an error if none was."""
    if _runtime is None:
        raise RuntimeError(
            "no tickwork runtime in this process: build one with workers.app.build_runtime"
        )
    return _runtime
