"""A private PostgreSQL server for scenarios that stop and start the database.

The shared PostgreSQL on 127.0.0.1:5432 is used by other test runs and must never be
stopped, so a scenario that restarts the database gets its own: `initdb` in a fresh
directory under /tmp, a free port on 127.0.0.1, trust authentication, fsync off. The
server runs as the `postgres` OS user when the tests run as root (PostgreSQL refuses to
run as root). Teardown always stops it and removes the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, service_unavailable

DATABASE = "tickwork"


def _bin_dir() -> Path | None:
    """The newest installed server's bin directory, or None."""
    candidates = [
        Path(d)
        for d in glob.glob("/usr/lib/postgresql/*/bin")
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists()
    ]
    if not candidates:
        found = shutil.which("pg_ctl")
        if found and shutil.which("initdb"):
            return Path(found).parent
        return None

    def version(d: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in d.parent.name.split(".") if p.isdigit())

    return max(candidates, key=version)


class PrivatePostgres:
    """One PostgreSQL cluster of this test: `.url`, `.stop()`, `.start()`, `.restart()`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="tickwork-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                service_unavailable("the `postgres` OS user (to run a private PostgreSQL)")
                raise
            self._user = "postgres"
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.dir.chmod(0o700)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False
        )

    def _check(self, what: str, result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"private PostgreSQL: {what} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{log}"
            )

    def init(self) -> None:
        self._check(
            "initdb",
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                timeout=120,
            ),
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# private test server\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "fsync = off\n"
                "max_connections = 200\n"
            )
        self.start()
        self._check(
            "createdb",
            self._run(
                "createdb", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", DATABASE
            ),
        )

    def start(self) -> None:
        self._check(
            "pg_ctl start",
            self._run(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                timeout=90,
            ),
        )

    def stop(self) -> None:
        self._check(
            "pg_ctl stop",
            self._run(
                "pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data), timeout=90
            ),
        )

    def restart(self, down_s: float) -> None:
        """Stop (fast: open connections are cut), stay down `down_s` seconds, start."""
        self.stop()
        time.sleep(down_s)
        self.start()

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data)).returncode == 0

    def destroy(self) -> None:
        try:
            if self.data.exists() and self.running:
                self._run(
                    "pg_ctl",
                    "stop",
                    "-w",
                    "-t",
                    "30",
                    "-m",
                    "immediate",
                    "-D",
                    str(self.data),
                    timeout=60,
                )
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A running private PostgreSQL with an empty `tickwork` database."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        service_unavailable("PostgreSQL server binaries (initdb, pg_ctl)")
        raise AssertionError("unreachable")
    server = PrivatePostgres(bin_dir)
    try:
        server.init()
        yield server
    finally:
        server.destroy()
