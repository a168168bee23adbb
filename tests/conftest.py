"""Fixtures shared by every test layer.

- Unit tests: SQLite in a temp dir + Dramatiq's StubBroker (``embedded`` fixture).
- Integration/acceptance: the real PostgreSQL and RabbitMQ on loopback. Each test
  session gets its own database (created, then dropped) and its own queue prefix, so
  parallel or repeated runs never collide. With ``CI=true`` a missing service fails
  the run; locally it skips with the reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SESSION_ID = uuid.uuid4().hex[:8]
FERNET_KEY = Fernet.generate_key().decode()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench", action="store_true", help="run the opt-in benchmarks")
    parser.addoption("--soak", action="store_true", help="long versions of reliability scenarios")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
        if "/acceptance/" in path:
            item.add_marker(pytest.mark.acceptance)
        if "/bench/" in path:
            item.add_marker(pytest.mark.bench)
            if not config.getoption("--bench"):
                item.add_marker(pytest.mark.skip(reason="benchmark: run with --bench"))


@pytest.fixture(autouse=True)
def _clean_tickwork_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees TICKWORK_* from the developer's shell; the runtime is reset after."""
    for key in list(os.environ):
        if key.startswith("TICKWORK_"):
            monkeypatch.delenv(key)
    yield
    from workers.runtime import set_runtime

    set_runtime(None)


def service_unavailable(what: str) -> None:
    message = f"{what} is not reachable"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true: real services are required", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


# --- PostgreSQL -------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh database for this test session (dropped at the end)."""
    import psycopg

    if not port_open("127.0.0.1", 5432):
        service_unavailable("PostgreSQL at 127.0.0.1:5432")
    name = f"tickwork_test_{SESSION_ID}"
    admin = PG_ADMIN_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Any]:
    """A migrated PostgreSQL database, emptied of rows before each test."""
    from sqlalchemy import text

    from schema import Base
    from schema import migrate as migrations
    from schema.engine import Database
    from tickwork.settings import load_settings

    settings = load_settings({"TICKWORK_DATABASE_URL": pg_url, "TICKWORK_FERNET_KEY": FERNET_KEY})
    db = Database(settings)
    migrations.upgrade(db.engine)
    with db.engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield db
    db.dispose()


# --- RabbitMQ ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def amqp_url() -> str:
    if not port_open("127.0.0.1", 5672):
        service_unavailable("RabbitMQ at 127.0.0.1:5672")
    return AMQP_URL


@pytest.fixture
def queue_prefix(amqp_url: str) -> Iterator[str]:
    """A queue prefix unique to this test; its queues are deleted afterwards."""
    import pika

    prefix = f"t{SESSION_ID}{uuid.uuid4().hex[:6]}."
    yield prefix
    from tickwork import queues

    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    for name in queues.ALL:
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(prefix + name + suffix)
    connection.close()


# --- embedded (unit) -------------------------------------------------------------
@dataclass
class Embedded:
    """An in-process system for unit tests: SQLite + StubBroker + a Dramatiq worker."""

    runtime: Any
    worker: Any

    @property
    def db(self) -> Any:
        return self.runtime.db

    @property
    def broker(self) -> Any:
        return self.runtime.broker

    def drain(self) -> None:
        """Process everything queued, including delayed messages already due."""
        for _ in range(2):  # a second pass catches messages enqueued by the first (retries)
            for queue in list(self.broker.queues):
                if not queue.endswith((".DQ", ".XQ")):
                    self.broker.join(queue, timeout=30_000, fail_fast=False)
            self.worker.join()


def make_settings(tmp_path: Path, **env: str) -> Any:
    from tickwork.settings import load_settings

    values = {
        "TICKWORK_DATA_DIR": str(tmp_path / "data"),
        "TICKWORK_MIN_BACKOFF_MS": "10",
        "TICKWORK_MAX_BACKOFF_MS": "50",
    }
    values.update(env)
    return load_settings(values)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Embedded]:
    from dramatiq import Worker

    from schema import migrate as migrations
    from schema.engine import Database
    from workers.app import build_runtime

    settings = make_settings(tmp_path)
    db = Database(settings)
    migrations.upgrade(db.engine)
    runtime = build_runtime(settings, db)
    worker = Worker(runtime.broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield Embedded(runtime, worker)
    worker.stop()
    runtime.broker.close()
    db.dispose()


# --- real processes (acceptance) ------------------------------------------------
def tickwork_command(*args: str) -> list[str]:
    """Run this checkout's CLI (not whatever `tickwork` is first on PATH)."""
    return [sys.executable, "-m", "admin.cli.main", *args]


def tickwork_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWORK_")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def run_tickwork(
    *args: str, cwd: Path, timeout: float = 60, **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tickwork_command(*args),
        cwd=cwd,
        env=tickwork_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
