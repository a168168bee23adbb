"""Who starts a run that an operator asks for from a process without workers.

On RabbitMQ every process shares the broker, so the CLI and ``tickwork api`` send runs
themselves. In the embedded mode the workers live inside ``tickwork run``: another
process only records the run, and ``tickwork run``'s outbox sends it
(docs/RUN_LIFECYCLE.md). Nothing is recorded when no ``tickwork run`` is alive.
"""

from __future__ import annotations

import dramatiq

from tickwork.errors import NoRunningSystemError
from tickwork.settings import Settings
from workers.heartbeat import age_s, heartbeat_path


def runs_broker(settings: Settings, broker: dramatiq.Broker | None) -> dramatiq.Broker | None:
    """The broker through which a process other than ``tickwork run`` starts runs.

    On RabbitMQ: ``broker`` itself (every process shares it). In the embedded mode a
    second process's in-process broker has no workers: the run is only recorded (None),
    and the running ``tickwork run`` sends it from its outbox within a second. With no
    ``tickwork run`` alive for this data dir, :class:`NoRunningSystemError` says so,
    before anything is recorded.
    """
    if not settings.embedded_broker:
        return broker
    path = heartbeat_path(settings, "run")
    age = age_s(path)
    fresh_s = 3 * settings.heartbeat_interval_s + 5
    if age is None or age > fresh_s:
        seen = "never" if age is None else f"{age:.0f} s ago"
        raise NoRunningSystemError(
            f"no `tickwork run` is running for {settings.data_dir} (its heartbeat {path} "
            f"was last seen {seen}): nothing would run this. Start `tickwork run` in another "
            "terminal, then try again"
        )
    return None
