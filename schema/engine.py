"""Engine and session setup for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from schema.crypto import set_encryption_keys
from tickwork.errors import ConfigError
from tickwork.settings import Settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """An engine for the configured database; creates the data dir for SQLite."""
    url = settings.sqlalchemy_url
    if settings.is_sqlite:
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # Every worker thread holds a connection while it records a run; a pool smaller than
    # the thread count makes the overflow reconnect on every message.
    kwargs.setdefault("pool_size", settings.worker_threads + 4)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def configure_encryption(settings: Settings) -> None:
    """Install the Fernet key: from settings, or a key file in the embedded data dir."""
    if settings.fernet_key is not None:
        set_encryption_keys(settings.fernet_key.get_secret_value())
        return
    if not settings.is_sqlite:
        raise ConfigError(
            "TICKWORK_FERNET_KEY: required when the database is PostgreSQL "
            "(generate one with `tickwork keygen`)"
        )
    key_file = settings.data_dir / "fernet.key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_bytes(Fernet.generate_key())
        key_file.chmod(0o600)
    set_encryption_keys(key_file.read_bytes().strip())


class Database:
    """An engine plus its session factory: the one handle the roles pass around."""

    def __init__(self, settings: Settings, **engine_kwargs: Any) -> None:
        self.settings = settings
        configure_encryption(settings)
        self.engine = make_engine(settings, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._statements: Engine | None = None

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        """A connection for ONE statement, committed by the server as it runs (autocommit).

        The worker's run-record writes are single Core ``INSERT/UPDATE ... RETURNING``
        statements on the path of every message; without BEGIN, COMMIT and a pre-ping
        they cost one round trip instead of four. Use :meth:`session` for anything more.
        """
        if self.engine.dialect.name != "postgresql":
            with self.engine.begin() as connection:
                yield connection
            return
        if self._statements is None:
            self._statements = make_engine(
                self.settings,
                isolation_level="AUTOCOMMIT",
                pool_pre_ping=False,  # a dropped connection fails once; callers retry
                pool_size=self.settings.worker_threads + 2,
            )
        with self._statements.connect() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()
        if self._statements is not None:
            self._statements.dispose()
            self._statements = None
