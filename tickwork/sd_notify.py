"""systemd's notification protocol (``sd_notify(3)``), spoken directly: no libsystemd.

A service with ``Type=notify`` tells systemd how it is doing by sending newline-separated
``KEY=value`` assignments in one datagram to the AF_UNIX socket named in
``$NOTIFY_SOCKET``: ``READY=1`` once it serves, ``WATCHDOG=1`` at least every
``$WATCHDOG_USEC`` microseconds while it is healthy (the unit's ``WatchdogSec=``),
``STOPPING=1`` when it begins to shut down, ``STATUS=...`` a line for ``systemctl status``.

- ``$NOTIFY_SOCKET`` unset (not run by systemd, or not ``Type=notify``): every call here
  is a no-op that returns False. So tickwork calls them unconditionally.
- A name starting with ``@`` is in the abstract namespace (the ``@`` stands for a NUL
  byte); otherwise it is a filesystem path. Other forms (``vsock:``, systemd 253+) are
  not spoken here: ignored, once logged.
- The watchdog belongs to one process: systemd sets ``$WATCHDOG_PID`` to the main
  process. A process whose pid differs (a child that inherited the environment) must not
  send ``WATCHDOG=1`` on its behalf: :func:`watchdog_usec` answers None there, and
  :func:`watchdog` sends nothing. The main process may hand the watchdog to the children it
  is about to fork with :func:`delegate_watchdog` (``tickwork worker`` does: its Dramatiq
  worker processes run the heartbeat, and the unit says ``NotifyAccess=all``).

Sending never raises: a service must not die because systemd's socket went away; a
failure is logged once per reason.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)

_warned: set[str] = set()


def notify_address(env: Mapping[str, str] | None = None) -> str | bytes | None:
    """The address to send to (``bytes`` for an abstract socket), or None: not asked to."""
    value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    _warn_once(f"NOTIFY_SOCKET={value!r}: not an absolute path or @abstract name; ignored")
    return None


def notify(*states: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``, ``"STATUS=..."``) in one datagram.

    True if it was sent; False when ``$NOTIFY_SOCKET`` is unset (no-op) or sending failed.
    """
    address = notify_address(env)
    if address is None or not states:
        return False
    message = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        _warn_once(f"cannot notify systemd at {address!r}: {exc}")
        return False
    return True


def watchdog_usec(env: Mapping[str, str] | None = None, pid: int | None = None) -> int | None:
    """The watchdog interval systemd expects of *this* process, in microseconds, or None.

    As ``sd_watchdog_enabled(3)``: ``$WATCHDOG_USEC`` must be a positive integer, and
    ``$WATCHDOG_PID``, when set, must be this process's pid.
    """
    values = os.environ if env is None else env
    try:
        usec = int(values.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = values.get("WATCHDOG_PID", "")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec


def watchdog(env: Mapping[str, str] | None = None) -> bool:
    """``WATCHDOG=1``, if the watchdog is this process's (see :func:`watchdog_usec`)."""
    if watchdog_usec(env) is None:
        return False
    return notify("WATCHDOG=1", env=env)


def ready(status: str | None = None) -> bool:
    """``READY=1`` (with a ``STATUS=`` line for ``systemctl status``)."""
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def stopping(status: str | None = None) -> bool:
    """``STOPPING=1``: shutdown has begun (systemd shows the unit as deactivating)."""
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def delegate_watchdog() -> bool:
    """Hand this process's watchdog to the processes it forks after this call.

    Drops ``$WATCHDOG_PID`` from the environment when it names this process: children
    then see ``$WATCHDOG_USEC`` alone, which means "the watchdog is yours". systemd
    accepts their datagrams only with ``NotifyAccess=all`` in the unit. True if the
    watchdog was this process's to hand on.
    """
    if watchdog_usec() is None:
        return False
    os.environ.pop("WATCHDOG_PID", None)
    return True


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning("%s", message)
