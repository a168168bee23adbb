"""Logical queue names, one per concern. Real names get ``TICKWORK_QUEUE_PREFIX``."""

DEFAULT = "default"  # scheduled maintenance and sync jobs
SHORT = "short"  # quick user-facing work (preflight, enqueuer), 60 s limit
LONG = "long"  # installs and scratch orgs, long time limit
SCHEDULER = "scheduler"  # ticks and dispatch

ALL = (DEFAULT, SHORT, LONG, SCHEDULER)


def physical_names(prefix: str) -> list[str]:
    """Every queue tickwork declares, with ``prefix``: each logical queue, its delay
    queue (``.DQ``) and its dead-letter queue (``.XQ``)."""
    return [f"{prefix}{name}{suffix}" for name in ALL for suffix in ("", ".DQ", ".XQ")]
