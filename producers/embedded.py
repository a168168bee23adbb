"""The embedded system behind ``tickwork run``: everything in one process.

SQLite (or the configured database) + Dramatiq's in-process broker + worker threads
+ a ticker thread in place of periodiq (+ the admin API when it is installed). Made
for a laptop with nothing installed; production runs the same code as separate
processes on RabbitMQ.
"""

from __future__ import annotations

import logging

from dramatiq import Worker

from schema import migrate
from schema.engine import Database
from tickwork.settings import Settings
from workers.app import build_runtime
from workers.scheduler.loop import EmbeddedTicker

logger = logging.getLogger(__name__)


class EmbeddedSystem:
    def __init__(self, settings: Settings) -> None:
        from producers.checks import check_registered_schedules

        check_registered_schedules(settings)
        self.settings = settings
        self.db = Database(settings)
        migrate.upgrade(self.db.engine)
        from producers.checks import check_configured_jobs

        check_configured_jobs(self.db)
        self.runtime = build_runtime(settings, self.db)
        self.worker = Worker(
            self.runtime.broker,
            worker_threads=settings.worker_threads,
            worker_timeout=100,
        )
        self.ticker = EmbeddedTicker(self.runtime.broker)

    def start(self) -> None:
        self.worker.start()
        self.ticker.start()

    def banner(self) -> str:
        return (
            f"tickwork running (embedded): database {self.settings.sqlalchemy_url}, "
            f"in-process broker, {self.settings.worker_threads} worker threads. Ctrl-C stops."
        )

    def stop(self) -> None:
        self.ticker.stop()
        self.worker.stop(timeout=self.settings.worker_shutdown_timeout_s * 1000)
        self.db.dispose()
