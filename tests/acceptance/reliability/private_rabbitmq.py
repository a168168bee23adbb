"""A private RabbitMQ node for the tests that restart the broker or reconfigure it.

The shared broker on 5672 serves every other test run on this machine, so it is never
stopped here. This starts a second node of the installed RabbitMQ (own node name,
ports, data and log folders) that a test may stop, start and reconfigure at will.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.conftest import free_port, port_open, service_unavailable


class PrivateRabbitMQ:
    """One RabbitMQ node of our own; ``stop_app``/``start_app`` keep the node's data."""

    def __init__(self, advanced_config: str = "[]") -> None:
        self.node = f"tw{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tickwork-rmq-"))
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.dir / "advanced.config").write_text(advanced_config + ".\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        shutil.chown(self.dir, "rabbitmq", "rabbitmq")
        for child in self.dir.iterdir():
            shutil.chown(child, "rabbitmq", "rabbitmq")
        self.dir.chmod(0o755)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.dir / "pid"),
        )
        return env

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        done = subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def start(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self._env(), check=True, timeout=30)
        self.ctl("wait", "--timeout", "60", str(self.dir / "pid"), timeout_s=90)

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60", timeout_s=90)

    def eval(self, expression: str) -> str:
        return self.ctl("eval", expression).strip()

    def stop(self) -> None:
        try:
            self.ctl("stop", timeout_s=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pid_file = self.dir / "pid"
            if pid_file.exists():
                subprocess.run(["kill", "-9", pid_file.read_text().strip()], check=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and port_open("127.0.0.1", self.port):
            time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_private_rabbitmq(advanced_config: str = "[]") -> PrivateRabbitMQ:
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        service_unavailable("rabbitmq-server (to start a private RabbitMQ node)")
    node = PrivateRabbitMQ(advanced_config)
    try:
        node.start()
    except Exception as exc:
        node.stop()
        service_unavailable(f"a private RabbitMQ node ({exc})")
    return node
