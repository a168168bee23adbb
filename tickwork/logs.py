"""One log format for every tickwork process, configured in one place.

``configure_logging(level, fmt, role)`` is called once by each process: the CLI commands
(``tickwork worker`` / ``scheduler`` / ``api`` / ``run`` and the short ones), each Dramatiq
worker process (``workers.app:setup``) and the worker's metrics process. Dramatiq's,
pika's, uvicorn's and alembic's loggers all end up in the one handler it installs on the
root logger, on stderr:

- ``text`` (``TICKWORK_LOG_FORMAT=text``, the default), for people::

    2026-11-30T02:26:11.600Z INFO    worker[4242] dramatiq.worker.Worker: Shutting down...

- ``json``, one object per line, for Loki/ELK::

    {"time": "2026-11-30T02:26:11.600Z", "level": "INFO", "logger": "...", "message": "...",
     "role": "worker", "pid": 4242, "thread": "MainThread"}

  plus ``exc_info`` (the formatted traceback) when the record carries one.

Times are ISO 8601 in UTC in both formats. The process *role* (worker, scheduler, api,
run, cli) is kept here too: a forked Dramatiq worker process inherits it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(role)s[%(process)d] %(name)s: %(message)s"

_role = "cli"


def process_role() -> str:
    """What this process is: worker, scheduler, api, run, or cli (any other command)."""
    return _role


def _utc_time(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _RoleFilter(logging.Filter):
    """Stamps each record with this process's role (forked processes inherit it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks included as a string)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "role": getattr(record, "role", _role),
            "pid": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(fmt: str) -> logging.Formatter:
    """``json`` or (anything else) ``text``."""
    return JsonFormatter() if fmt == "json" else TextFormatter()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted: in a Dramatiq worker
    process that is the pipe Dramatiq's main process reads and writes out line by line."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr


def configure_logging(level: str, fmt: str = "text", role: str | None = None) -> None:
    """Send every log record of this process to stderr in ``fmt``, at ``level``.

    Replaces the root logger's console handlers (an earlier call's, one inherited over a
    fork, or ``logging.basicConfig``'s) and keeps any other (files, test capture). Safe
    to call again.
    """
    global _role
    if role is not None:
        _role = role
    handler = StderrHandler()
    handler.setFormatter(formatter(fmt))
    handler.addFilter(_RoleFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, StderrHandler) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # pika logs every socket event at INFO; its warnings and errors still show.
    logging.getLogger("pika").setLevel(logging.WARNING)
    # uvicorn's own handlers (when something configured them) would print a second,
    # differently formatted line: its records go to the root handler instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uvicorn_logger = logging.getLogger(name)
        for old in list(uvicorn_logger.handlers):
            uvicorn_logger.removeHandler(old)
        uvicorn_logger.propagate = True
    logging.captureWarnings(True)  # warnings.warn() lines in the same format
