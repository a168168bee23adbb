"""The embedded system behind ``tickwork run``: everything in one process.

SQLite (or the configured database) + Dramatiq's in-process broker + worker threads
+ a ticker thread in place of periodiq (+ the admin API when it is installed). Made
for a laptop with nothing installed; production runs the same code as separate
processes on RabbitMQ.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import dramatiq
from dramatiq import Worker

from admin.api import create_app
from producers.ticker import EmbeddedTicker
from schema import migrate
from schema.base import utcnow
from schema.engine import Database
from tickwork.plain_words import hide_password
from tickwork.settings import Settings
from workers.app import build_runtime, import_job_modules
from workers.registry import all_jobs
from workers.scheduler.effective import check_overrides_name_known_jobs
from workers.scheduler.publish import republish_stranded

logger = logging.getLogger(__name__)

OUTBOX_POLL_S = 1.0  # how soon `tickwork run` sends runs another process recorded


class OutboxPoller:
    """Sends queued runs that nobody sent (recorded by the CLI from another terminal,
    or whose send failed), every ``interval_s``, through the embedded broker."""

    def __init__(self, broker: dramatiq.Broker, db: Database, interval_s: float) -> None:
        self.broker, self.db, self.interval_s = broker, db, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                # No waiting period: the claim makes a race with the sender harmless.
                republish_stranded(self.broker, self.db, utcnow(), older_than_s=0)
            except Exception:  # the database is briefly busy: the next pass retries
                logger.warning("outbox pass failed", exc_info=True)


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` for uvicorn (``Server.run(sockets=...)``):
    bound before anything says the API is served, so a taken port is known for sure."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


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
        self.outbox = OutboxPoller(self.runtime.broker, self.db, OUTBOX_POLL_S)
        self.api_server: Any = None
        self.api_thread: Any = None
        self.api_unavailable: str | None = None  # why the admin page is not served

    def start(self) -> None:
        self.worker.start()
        self.ticker.start()
        self.outbox.start()
        self._start_api()

    def _start_api(self) -> None:
        """The admin API and page on api_host:api_port, in a thread.

        The port is bound here, before anything is announced, and handed to uvicorn: a
        taken port (e.g. a second `tickwork run`) is known for sure, said once, and the
        rest keeps running -- jobs matter more than the page, and the port may be held by
        an unrelated program. The banner then says the page is not served.
        """
        import uvicorn

        host, port = self.settings.api_host, self.settings.api_port
        try:
            sock = listen_socket(host, port)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.api_unavailable = f"cannot listen on {host}:{port} ({reason})"
            logger.warning(
                "admin page NOT served: %s; another `tickwork run` or program holds the port "
                "-- set TICKWORK_API_PORT to a free one. Jobs and the scheduler run regardless.",
                self.api_unavailable,
            )
            return
        app = create_app(self.settings, self.db, self.runtime.broker)
        # log_config=None: uvicorn's records go to tickwork's handler, in its format.
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None)
        self.api_server = uvicorn.Server(config)
        self.api_thread = threading.Thread(
            target=self.api_server.run, kwargs={"sockets": [sock]}, daemon=True, name="api"
        )
        self.api_thread.start()

    def banner(self) -> str:
        if self.api_unavailable is None:
            page = f"admin page http://{self.settings.api_host}:{self.settings.api_port}/"
        else:
            page = f"admin page NOT served ({self.api_unavailable}; set TICKWORK_API_PORT)"
        return (
            f"tickwork running (embedded): database {hide_password(self.settings.sqlalchemy_url)}, "
            f"in-process broker, {self.settings.worker_threads} worker threads, {page}. "
            "Ctrl-C stops."
        )

    def stop(self) -> None:
        if self.api_server is not None:
            self.api_server.should_exit = True
            self.api_thread.join(10)
        self.ticker.stop()
        self.outbox.stop()
        self.worker.stop(timeout=self.settings.worker_shutdown_timeout_s * 1000)
        self.db.dispose()
