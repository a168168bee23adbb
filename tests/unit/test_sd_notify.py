"""systemd's notification protocol (tickwork/sd_notify.py), against real datagram sockets."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_for
from tickwork import sd_notify
from workers.heartbeat import Heartbeat


def receive(sock: socket.socket) -> str:
    sock.settimeout(5)
    return sock.recv(4096).decode()


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket at a filesystem path, named in NOTIFY_SOCKET; no watchdog vars."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sock


def test_states_arrive_in_one_datagram_at_a_path(listener: socket.socket) -> None:
    assert sd_notify.ready("serving")
    assert receive(listener) == "READY=1\nSTATUS=serving"
    assert sd_notify.stopping()
    assert receive(listener) == "STOPPING=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a listener in the abstract namespace ("@name" in NOTIFY_SOCKET: a NUL byte),
    name = f"tickwork-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        # then a notification reaches it.
        assert sd_notify.notify("READY=1")
        assert receive(sock) == "READY=1"


def test_unset_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    assert sd_notify.notify_address() is None
    assert not sd_notify.ready()
    assert not sd_notify.watchdog()
    assert not sd_notify.stopping()
    assert not sd_notify.notify("READY=1", env={"NOTIFY_SOCKET": ""})


def test_unusable_socket_is_ignored_not_raised(tmp_path: Path) -> None:
    # Not a path or @name; a path nobody listens at: both False, neither raises.
    assert not sd_notify.notify("READY=1", env={"NOTIFY_SOCKET": "relative/notify"})
    assert not sd_notify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")})


def test_watchdog_is_the_process_it_names(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without WATCHDOG_USEC, no watchdog: nothing is sent.
    assert sd_notify.watchdog_usec() is None
    assert not sd_notify.watchdog()
    assert nothing_waiting(listener)
    # WATCHDOG_PID naming another process (we inherited the environment): ignored.
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sd_notify.watchdog_usec() is None
    assert not sd_notify.watchdog()
    assert nothing_waiting(listener)
    # Naming this process, or unset (USEC alone): ours.
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sd_notify.watchdog_usec() == 2_000_000
    assert sd_notify.watchdog()
    assert receive(listener) == "WATCHDOG=1"
    monkeypatch.delenv("WATCHDOG_PID")
    assert sd_notify.watchdog_usec() == 2_000_000
    # Malformed or zero values: no watchdog.
    for usec, pid in [("0", ""), ("soon", ""), ("1000", "me")]:
        assert sd_notify.watchdog_usec({"WATCHDOG_USEC": usec, "WATCHDOG_PID": pid}) is None


def test_delegate_watchdog_drops_only_our_own_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert not sd_notify.delegate_watchdog()  # not ours to hand on
    assert os.environ["WATCHDOG_PID"] == str(os.getpid() + 1)
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sd_notify.delegate_watchdog()
    assert "WATCHDOG_PID" not in os.environ
    assert sd_notify.watchdog_usec(pid=os.getpid() + 7) == 2_000_000  # a child's view


def test_heartbeat_sends_ready_once_then_watchdog_each_beat(
    tmp_path: Path, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    ready = [False]
    heartbeat = Heartbeat(tmp_path / "beat", 0.05, alive=lambda: True, ready=lambda: ready[0])
    heartbeat.start()
    try:
        # Given a heartbeat whose process is not ready yet: watchdog beats only;
        assert receive(listener) == "WATCHDOG=1"
        # once ready, READY=1 once, and the watchdog goes on.
        ready[0] = True
        seen: list[str] = []
        wait_for(lambda: seen.append(receive(listener)) or seen.count("WATCHDOG=1") > 3, 5, "beats")
        assert seen.count("READY=1") == 1
    finally:
        heartbeat.stop()
