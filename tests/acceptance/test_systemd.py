"""systemd deployment (deploy/systemd/): the units verify, keep their promises, and real
`tickwork worker`, `scheduler` and `api` speak the notify protocol to a NOTIFY_SOCKET.

No systemd runs as PID 1 on the CI machine (nor in its containers), so the units cannot be
started here. What can be checked without it is:

- ``systemd-analyze verify`` on every unit. It refuses a unit whose ExecStart= binary does
  not exist, and the units name the install path (/opt/tickwork/venv/bin/tickwork): each is
  verified as a copy in a temp dir with that path replaced by an executable stub. The
  template is verified through an instance (tickwork-worker@1.service, found beside it).
  verify exits 0 on unknown keys and unparsable values (it only warns), so any warning that
  names a tickwork unit fails the test too.
- ``systemd-analyze security --offline=yes``: the exposure score of each service stays low.
- The protocol, for real: each process is started as systemd starts it -- NOTIFY_SOCKET
  naming a datagram socket this test listens on, WATCHDOG_USEC, and WATCHDOG_PID set to the
  process's own pid (a shell exports its ``$$`` and execs tickwork in its place).
"""

from __future__ import annotations

import configparser
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest

from tests.conftest import REPO_ROOT, free_port, services_env, tickwork_command, tickwork_env
from tests.support.processes import Process, ProcessStarter
from tests.support.waiting import wait_for

UNITS_DIR = REPO_ROOT / "deploy" / "systemd"
SERVICES = [
    "tickwork-worker@.service",
    "tickwork-scheduler.service",
    "tickwork-api.service",
    "tickwork-migrate.service",
]
UNITS = [*SERVICES, "tickwork.target"]
INSTALLED_BINARY = "/opt/tickwork/venv/bin/tickwork"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)


# --- the unit files ---------------------------------------------------------------------
def unit(name: str) -> configparser.RawConfigParser:
    """A unit file's settings; a key given twice keeps its last value (enough here)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string((UNITS_DIR / name).read_text())
    return parser


def env_file() -> dict[str, str]:
    lines = (UNITS_DIR / "tickwork.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


@pytest.fixture(scope="module")
def verify_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units, copied, with ExecStart= pointing at an executable stub."""
    folder = tmp_path_factory.mktemp("units")
    stub = folder / "bin" / "tickwork"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    for name in UNITS:
        text = (UNITS_DIR / name).read_text()
        (folder / name).write_text(text.replace(INSTALLED_BINARY, str(stub)))
    return folder


@needs_systemd_analyze
@pytest.mark.parametrize("name", [*UNITS, "tickwork-worker@1.service"])
def test_unit_verifies(verify_dir: Path, name: str) -> None:
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", "--man=no", str(verify_dir / name)],
        cwd=verify_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    ours = [line for line in result.stderr.splitlines() if "tickwork" in line]
    assert result.returncode == 0 and not ours, result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("name", SERVICES)
def test_unit_exposure_stays_low(verify_dir: Path, name: str) -> None:
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=yes", "--no-pager", name],
        cwd=verify_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:  # systemd < 250
        pytest.skip("this systemd-analyze has no --offline")
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    # 1.1-1.3 when written (0 = locked down, 10 = exposed; "OK" up to 2.0); what remains
    # open is the network (a job service needs it) and NotifyAccess=all of the worker.
    assert float(found.group(1)) <= 2.0, result.stdout


def test_units_keep_their_promises() -> None:
    settings = env_file()
    shutdown_s = int(settings["TICKWORK_WORKER_SHUTDOWN_TIMEOUT_S"])
    heartbeat_s = float(settings["TICKWORK_HEARTBEAT_INTERVAL_S"])
    for name in SERVICES:
        service = unit(name)["Service"]
        # Every service: secrets from the root-only env file, sandboxed, logs to the journal.
        assert "\nEnvironmentFile=/etc/tickwork/tickwork.env\n" in (UNITS_DIR / name).read_text()
        for key, value in {
            "DynamicUser": "yes",
            "ProtectSystem": "strict",
            "NoNewPrivileges": "yes",
            "PrivateTmp": "yes",
            "StandardError": "journal",
        }.items():
            assert service.get(key) == value, f"{name}: {key}"
        assert not re.search(
            r"(?m)^Environment=.*(PASSWORD|DATABASE_URL|BROKER_URL|KEY)=",
            (UNITS_DIR / name).read_text(),
        ), f"{name}: a secret in Environment="
        if name == "tickwork-migrate.service":
            assert service["Type"] == "oneshot"
            continue
        # The long-running ones: notify with a watchdog the heartbeat can keep, restarted on
        # failure, after the database and the broker.
        assert service["Type"] == "notify", name
        assert service["Restart"] == "on-failure", name
        watchdog_s = float(service["WatchdogSec"])
        assert heartbeat_s <= watchdog_s / 2, f"{name}: heartbeat too slow for WatchdogSec"
        after = unit(name)["Unit"]["After"].split()
        wants = unit(name)["Unit"]["Wants"].split()
        for dependency in ("postgresql.service", "rabbitmq-server.service"):
            assert dependency in after and dependency in wants, name
        assert unit(name)["Install"]["WantedBy"] == "tickwork.target", name
    worker = unit("tickwork-worker@.service")["Service"]
    # The worker: Dramatiq's main process forwards SIGTERM (KillMode=mixed), its worker
    # processes send the notifications (NotifyAccess=all), and systemd waits for jobs.
    assert worker["KillMode"] == "mixed"
    assert worker["NotifyAccess"] == "all"
    assert int(worker["TimeoutStopSec"]) > shutdown_s
    # What it writes is in its RuntimeDirectory (writable under ProtectSystem=strict).
    text = (UNITS_DIR / "tickwork-worker@.service").read_text()
    runtime = "/run/" + worker["RuntimeDirectory"]
    for setting in ("TICKWORK_HEARTBEAT_FILE", "TICKWORK_METRICS_DIR"):
        assert re.search(rf"(?m)^Environment={setting}={re.escape(runtime)}/", text), setting


# --- the protocol, with real processes ----------------------------------------------------
class NotifyListener:
    """A datagram socket in the abstract namespace, as systemd's NOTIFY_SOCKET; a thread
    records every message with its arrival time."""

    def __init__(self) -> None:
        self.name = f"@tickwork-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, state: str) -> list[float]:
        """When messages carrying ``state`` (e.g. "READY=1") arrived."""
        return [at for at, text in list(self.messages) if state in text.splitlines()]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listeners() -> Iterator[dict[str, NotifyListener]]:
    made = {role: NotifyListener() for role in ("worker", "scheduler", "api")}
    yield made
    for listener in made.values():
        listener.close()


def as_systemd_starts(*args: str) -> list[str]:
    """`tickwork <args>` with WATCHDOG_PID naming its own pid, as systemd sets it: the
    shell exports its pid, then execs tickwork in its place (same pid)."""
    script = 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *tickwork_command(*args)]


def consumers_on(amqp_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.consumer_count)
    finally:
        connection.close()


def test_worker_scheduler_and_api_notify_systemd(
    tmp_path: Path,
    pg_db: Any,
    amqp_url: str,
    queue_prefix: str,
    listeners: dict[str, NotifyListener],
) -> None:
    interval_s = 0.5
    api_port = free_port()
    base = services_env(
        pg_db,
        amqp_url,
        queue_prefix,
        TICKWORK_DATA_DIR=str(tmp_path / "data"),
        TICKWORK_METRICS_PORT="0",
        TICKWORK_WORKER_PROCESSES="1",
        TICKWORK_WORKER_THREADS="2",
        TICKWORK_HEARTBEAT_INTERVAL_S=str(interval_s),
        TICKWORK_API_PORT=str(api_port),
        WATCHDOG_USEC="5000000",
    )
    start = ProcessStarter(tmp_path, as_systemd_starts, tickwork_env)
    processes: dict[str, Process] = {}
    try:
        # Given worker, scheduler and API started by "systemd", each with its NOTIFY_SOCKET,
        for role, listener in listeners.items():
            env = {
                **base,
                "NOTIFY_SOCKET": listener.name,
                "TICKWORK_HEARTBEAT_FILE": str(tmp_path / f"heartbeat-{role}"),
            }
            processes[role] = start(role, env)
        started = time.monotonic()
        every = list(processes.values())
        # then each says READY=1 once it serves: the worker when RabbitMQ has its consumer,
        for role, listener in listeners.items():
            wait_for(partial(listener.times, "READY=1"), 60, f"{role}: READY=1", processes=every)
        assert consumers_on(amqp_url, f"{queue_prefix}default") >= 1
        assert httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=5).status_code == 200
        for role, listener in listeners.items():
            assert len(listener.times("READY=1")) == 1, (role, listener.messages)
            assert listener.times("READY=1")[0] > started
        # and WATCHDOG=1 every heartbeat interval while it runs (the worker's from its
        # worker process: the main process handed the watchdog on).
        time.sleep(6 * interval_s)
        for role, listener in listeners.items():
            beats = listener.times("WATCHDOG=1")
            assert len(beats) >= 4, (role, listener.messages)
            gaps = [b - a for a, b in zip(beats[-5:-1], beats[-4:], strict=True)]
            assert all(0.5 * interval_s <= gap <= 3 * interval_s for gap in gaps), (role, gaps)
        # When each gets SIGTERM, it says STOPPING=1 and exits 0.
        for proc in every:
            proc.send_signal(signal.SIGTERM)  # all at once: each stops in its own time
        for role, proc in processes.items():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{role} did not stop on SIGTERM:\n{proc.output()}") from None
            out = proc.output()
            assert proc.returncode == 0, out
            assert listeners[role].times("STOPPING=1"), (role, listeners[role].messages)
            assert "Traceback" not in out, out
    finally:
        start.kill_all()
