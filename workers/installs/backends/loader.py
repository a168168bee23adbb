"""Loading code by name: the configured backend class, and a step's Python callable."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from schema.engine import Database
from tickwork.settings import Settings
from workers.installs.backends.protocol import BackendError, OrgBackend, StepFailed


def load_backend(settings: Settings, db: Database) -> OrgBackend:
    """Instantiate ``settings.org_backend`` (``module:Class``, built with settings and db)."""
    module_name, _, class_name = settings.org_backend.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise BackendError(
            f"TICKWORK_ORG_BACKEND: cannot load {settings.org_backend!r}: {exc}"
        ) from None
    backend = cls(settings, db)
    if not isinstance(backend, OrgBackend):
        raise BackendError(f"TICKWORK_ORG_BACKEND: {settings.org_backend!r} is not an OrgBackend")
    return backend


def import_callable(path: str) -> Callable[..., Any]:
    """``package.module:function`` (or ``package.module.function``) → the function."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise StepFailed(f"{path!r} is not a callable path (use package.module:function)")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise StepFailed(f"cannot import step {path!r}: {type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise StepFailed(f"step {path!r} is not callable")
    return fn  # type: ignore[no-any-return]
