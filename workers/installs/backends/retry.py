"""Retrying what a backend could not reach: transient errors, exponential jittered backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from workers.installs.backends.protocol import TransientBackendError

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientBackendError | ConnectionError | TimeoutError)


def with_backoff(
    fn: Callable[[], T],
    *,
    retries: int,
    min_backoff_ms: int,
    max_backoff_ms: int,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on a transient error wait (exponential, jittered) and call again."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or attempt >= retries:
                raise
            delay_ms = min(max_backoff_ms, min_backoff_ms * 2**attempt)
            sleep(random.uniform(delay_ms / 2, delay_ms) / 1000)
            attempt += 1
