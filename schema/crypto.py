"""Encryption at rest for secrets stored in columns (OAuth tokens).

The key is installed once at start-up by :func:`schema.engine.configure` from the
settings; a value written with one key and read without it fails loudly rather
than returning ciphertext as if it were a token.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_fernet: MultiFernet | None = None


class EncryptionKeyMissing(RuntimeError):
    """An encrypted column was used before :func:`set_encryption_keys`."""


def set_encryption_keys(*keys: str | bytes) -> None:
    """Install the Fernet keys; the first encrypts, all of them decrypt (rotation)."""
    global _fernet
    _fernet = MultiFernet([Fernet(k) for k in keys]) if keys else None


def _require() -> MultiFernet:
    if _fernet is None:
        raise EncryptionKeyMissing("no Fernet key configured (TICKWORK_FERNET_KEY)")
    return _fernet


class EncryptedText(TypeDecorator[str]):
    """Text encrypted with Fernet in the database, plain ``str`` in Python."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return _require().encrypt(value.encode()).decode("ascii")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        try:
            return _require().decrypt(value.encode("ascii")).decode()
        except InvalidToken:
            raise EncryptionKeyMissing(
                "stored secret cannot be decrypted with the configured TICKWORK_FERNET_KEY"
            ) from None
