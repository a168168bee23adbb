"""Fixtures shared by every test layer (helpers they use live in tests/support/).

- The system under test: ``embedded`` (SQLite in a temp dir + Dramatiq's StubBroker),
  ``services`` (the real PostgreSQL and RabbitMQ on loopback), and ``system``,
  parametrized over both; ``db``, the same for a bare database. The services variants
  are marked ``integration``.
- Real services: each test session gets its own database (created, then dropped), each
  test its own queue prefix, so parallel or repeated runs never collide. With ``CI=true``
  a missing service fails the run; locally it skips with the reason.
- ``tj``: the throw-away test jobs, declared for one test and forgotten after.
- ``start_process``: real ``tickwork`` processes, killed at the end of the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.support.processes import ProcessStarter
from tests.support.systems import Embedded, Services, System, running
from tests.support.throwaway_jobs import ThrowawayJobs

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SESSION_ID = uuid.uuid4().hex[:8]
FERNET_KEY = Fernet.generate_key().decode()
FAST_RETRIES = {"TICKWORK_MIN_BACKOFF_MS": "10", "TICKWORK_MAX_BACKOFF_MS": "50"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench", action="store_true", help="run the opt-in benchmarks")
    parser.addoption("--soak", action="store_true", help="long versions of reliability scenarios")
    parser.addoption(
        "--image", action="store_true", help="build and run the container image (buildah, podman)"
    )


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
        if item.get_closest_marker("image") and not config.getoption("--image"):
            item.add_marker(pytest.mark.skip(reason="container image: run with --image"))


@pytest.fixture(autouse=True)
def _clean_tickwork_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees TICKWORK_* from the developer's shell; the runtime is reset after."""
    for key in list(os.environ):
        if key.startswith("TICKWORK_"):
            monkeypatch.delenv(key)
    yield
    from workers.runtime import set_runtime

    set_runtime(None)


@pytest.fixture(autouse=True)
def _job_registry_restored() -> Iterator[None]:
    """Every test leaves the job registry as it found it. Test jobs it declared -- with
    ``tj``, or by importing a test job module, as building a runtime whose
    TICKWORK_JOB_MODULES lists one does -- are forgotten, and such a module is dropped
    from ``sys.modules``, so the next test that lists it declares its jobs afresh. (Else
    a test would see jobs only another test's processes know: a worker refuses to start
    on a database naming a job it does not declare.) Built-in jobs stay: their modules
    stay imported."""
    from workers.registry import all_jobs, unregister

    jobs_before, modules_before = set(all_jobs()), set(sys.modules)
    yield
    for name, spec in all_jobs().items():
        if name not in jobs_before and spec.fn.__module__.startswith("tests."):
            unregister(name)
    for module in set(sys.modules) - modules_before:
        if module.startswith("tests."):
            del sys.modules[module]


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
@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database called ``name``; dropped after."""
    import psycopg

    if not port_open("127.0.0.1", 5432):
        service_unavailable("PostgreSQL at 127.0.0.1:5432")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh database for this test session (dropped at the end)."""
    with postgres_database(f"tickwork_test_{SESSION_ID}") as url:
        yield url


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


def services_env(
    database: Any, amqp_url: str | None = None, queue_prefix: str | None = None, **settings: str
) -> dict[str, str]:
    """The settings (TICKWORK_* variables) of a process on the PostgreSQL ``database`` (a
    URL, or a ``Database`` such as ``pg_db``) and, given ``amqp_url``, on RabbitMQ with the
    test's ``queue_prefix``; ``settings`` on top."""
    if not isinstance(database, str):
        database = database.engine.url.render_as_string(hide_password=False)
    env = {"TICKWORK_DATABASE_URL": database, "TICKWORK_FERNET_KEY": FERNET_KEY}
    if amqp_url is not None:
        env["TICKWORK_BROKER_URL"] = amqp_url
        env["TICKWORK_QUEUE_PREFIX"] = queue_prefix or ""
    return {**env, **settings}


def service_settings(
    pg_db: Any, amqp_url: str | None = None, queue_prefix: str | None = None, **env: str
) -> Any:
    """:func:`services_env` as this test process's settings, with fast retries (as
    :func:`make_settings`); without ``amqp_url``, on the StubBroker."""
    from tickwork.settings import load_settings

    return load_settings(services_env(pg_db, amqp_url, queue_prefix, **{**FAST_RETRIES, **env}))


# --- SQLite -----------------------------------------------------------------------
def make_settings(tmp_path: Path, **env: str) -> Any:
    """Embedded settings: data (SQLite, key) in ``tmp_path/data``, fast retries."""
    from tickwork.settings import load_settings

    values = {"TICKWORK_DATA_DIR": str(tmp_path / "data"), **FAST_RETRIES}
    values.update(env)
    return load_settings(values)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Any]:
    """A migrated SQLite database in the test's folder."""
    from schema import migrate as migrations
    from schema.engine import Database

    db = Database(make_settings(tmp_path))
    migrations.upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.integration), "sqlite"])
def db(request: pytest.FixtureRequest) -> Any:
    """A migrated database, on PostgreSQL and on SQLite: the same rules on both."""
    return request.getfixturevalue("pg_db" if request.param == "postgresql" else "sqlite_db")


# --- the system under test ------------------------------------------------------------
@pytest.fixture
def tj() -> Iterator[ThrowawayJobs]:
    """The throw-away test jobs (t_count, t_fail, ...), declared for this test only.
    The systems below depend on it: a runtime binds the jobs declared when it is built."""
    jobs = ThrowawayJobs()
    jobs.declare()
    yield jobs
    jobs.release_slow.set()
    jobs.forget()


@pytest.fixture
def embedded(sqlite_db: Any, tj: ThrowawayJobs) -> Iterator[Embedded]:
    """SQLite + StubBroker + an in-process Dramatiq worker."""
    with running(Embedded, sqlite_db.settings, sqlite_db, timeout_ms=50) as system:
        yield system


@pytest.fixture
def services(pg_db: Any, amqp_url: str, queue_prefix: str, tj: ThrowawayJobs) -> Iterator[Services]:
    """PostgreSQL (tables emptied first) + RabbitMQ (the test's own queues) + an
    in-process Dramatiq worker."""
    settings = service_settings(pg_db, amqp_url, queue_prefix)
    # The database handle carries the settings too (publishers read the queue prefix,
    # age limit and heartbeat from it): the test's own, so its queues stay its own.
    pg_db.settings = settings
    with running(Services, settings, pg_db, timeout_ms=100) as system:
        yield system


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.integration)])
def system(request: pytest.FixtureRequest) -> System:
    """The system under test, once embedded and once on the real services."""
    found: System = request.getfixturevalue(request.param)
    return found


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


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[ProcessStarter]:
    """``start_process(command, env, cwd=tmp_path)``: a `tickwork <command>` process in
    its own process group, its output in ``tmp_path/<command>-<n>.log``; ``.stop(signal)``
    returns that output. Whatever still runs at the end of the test is killed."""
    starter = ProcessStarter(tmp_path, tickwork_command, tickwork_env)
    yield starter
    starter.kill_all()
