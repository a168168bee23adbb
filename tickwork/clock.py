"""The one clock: aware UTC now. Models, jobs and events all read time through it, so a
test can freeze it in one place per module."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Aware UTC now."""
    return dt.datetime.now(dt.UTC)
