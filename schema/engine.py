"""Engine and session setup for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine, event
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
    kwargs.setdefault("pool_size", 5)
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

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
