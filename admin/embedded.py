"""The embedded system behind ``tickwork run``: everything in one process.

SQLite (or the configured database) + Dramatiq's in-process broker + worker threads
+ a ticker thread in place of periodiq (+ the admin API when it is installed). Made
for a laptop with nothing installed; production runs the same code as separate
processes on RabbitMQ.
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq import Worker

from producers.ticker import EmbeddedTicker
from schema import migrate
from schema.engine import Database
from tickwork.settings import Settings
from workers.app import build_runtime, import_job_modules
from workers.registry import all_jobs
from workers.scheduler.effective import check_overrides_name_known_jobs

logger = logging.getLogger(__name__)


class EmbeddedSystem:
    def __init__(self, settings: Settings) -> None:
        import_job_modules(settings)  # a bad schedule stops start-up, naming the job
        self.settings = settings
        self.db = Database(settings)
        migrate.upgrade(self.db.engine)
        check_overrides_name_known_jobs(self.db, all_jobs())
        self.runtime = build_runtime(settings, self.db)
        self.worker = Worker(
            self.runtime.broker,
            worker_threads=settings.worker_threads,
            worker_timeout=100,
        )
        self.ticker = EmbeddedTicker(self.runtime.broker, self.runtime.settings)
        self.api_server: Any = None
        self.api_thread: Any = None

    def start(self) -> None:
        self.worker.start()
        self.ticker.start()
        self._start_api()

    def _start_api(self) -> None:
        """The admin API and page on api_host:api_port, in a thread; a taken port is
        logged and the rest keeps running (jobs matter more than the page)."""
        import socket
        import threading

        import uvicorn

        from admin.api import create_app

        host, port = self.settings.api_host, self.settings.api_port
        try:
            with socket.create_server((host, port)):
                pass
        except OSError as exc:
            logger.error("admin API not started: cannot listen on %s:%s (%s)", host, port, exc)
            return
        app = create_app(self.settings, self.db, self.runtime.broker)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        self.api_server = uvicorn.Server(config)
        self.api_thread = threading.Thread(target=self.api_server.run, daemon=True, name="api")
        self.api_thread.start()

    def banner(self) -> str:
        return (
            f"tickwork running (embedded): database {self.settings.sqlalchemy_url}, "
            f"in-process broker, {self.settings.worker_threads} worker threads, admin page "
            f"http://{self.settings.api_host}:{self.settings.api_port}/. Ctrl-C stops."
        )

    def stop(self) -> None:
        if self.api_server is not None:
            self.api_server.should_exit = True
            self.api_thread.join(10)
        self.ticker.stop()
        self.worker.stop(timeout=self.settings.worker_shutdown_timeout_s * 1000)
        self.db.dispose()
