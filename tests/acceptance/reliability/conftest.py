"""The reliability suite: real `tickwork worker` processes on the real RabbitMQ and
PostgreSQL, killed, stopped and fed poison. Each scenario records its figures; the
table (scenario, iterations, lost, duplicated, stuck, max recovery time) is printed at
the end of the run. `--soak` runs the long versions."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import FERNET_KEY, run_tickwork, tickwork_command, tickwork_env


@dataclass
class Figures:
    scenario: str
    iterations: int
    lost: int
    duplicated: int
    stuck: int
    max_recovery_s: float


RESULTS: list[Figures] = []


def record(figures: Figures) -> None:
    RESULTS.append(figures)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    write = terminalreporter.write_line
    write("")
    write(
        "reliability: scenario                                   iter  lost  dup  stuck  recovery"
    )
    for f in RESULTS:
        write(
            f"reliability: {f.scenario:<42} {f.iterations:>5} {f.lost:>5} {f.duplicated:>4} "
            f"{f.stuck:>6} {f.max_recovery_s:>8.1f} s"
        )


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak"))


def suite_env(
    tmp_path: Path, database_url: str, amqp_url: str, queue_prefix: str
) -> dict[str, str]:
    """The settings of the suite's processes, on a migrated database."""
    values = {
        "TICKWORK_DATABASE_URL": database_url,
        "TICKWORK_BROKER_URL": amqp_url,
        "TICKWORK_QUEUE_PREFIX": queue_prefix,  # unique per test; its queues deleted after
        "TICKWORK_FERNET_KEY": FERNET_KEY,
        "TICKWORK_JOB_MODULES": "tests.acceptance.reliability.jobs",
        "TICKWORK_WORKER_PROCESSES": "1",
        "TICKWORK_WORKER_THREADS": "4",
        "TICKWORK_WORKER_SHUTDOWN_TIMEOUT_S": "20",
        "TICKWORK_METRICS_PORT": "0",
        "TICKWORK_MIN_BACKOFF_MS": "100",
        "TICKWORK_MAX_BACKOFF_MS": "500",
        "TICKWORK_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
        # A killed worker's run is taken over 3 heartbeats later: 6 s here, 15 s by default.
        "TICKWORK_RUN_HEARTBEAT_S": "2",
    }
    migrated = run_tickwork("migrate", cwd=tmp_path, **values)
    assert migrated.returncode == 0, migrated.stderr
    return values


@pytest.fixture
def env(tmp_path: Path, pg_db: Any, amqp_url: str, queue_prefix: str) -> dict[str, str]:
    url = pg_db.engine.url.render_as_string(hide_password=False)
    return suite_env(tmp_path, url, amqp_url, queue_prefix)


@pytest.fixture
def runtime(env: dict[str, str]) -> Iterator[Any]:
    """This test process as a producer on the same database and broker."""
    from tickwork.settings import load_settings
    from workers.app import build_runtime

    rt = build_runtime(load_settings(env))
    yield rt
    rt.broker.close()
    rt.db.dispose()


ProcessStarter = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[ProcessStarter]:
    """``start(command, env)``: a `tickwork <command>` process in its own process group,
    its output in ``tmp_path/<command>-<n>.log`` (read it when a test fails); killed at
    the end of the test."""
    started: list[subprocess.Popen[str]] = []
    counts: dict[str, int] = {}

    def start(command: str, env: dict[str, str]) -> subprocess.Popen[str]:
        n = counts[command] = counts.get(command, -1) + 1
        log = tmp_path / f"{command}-{n}.log"
        proc = subprocess.Popen(
            tickwork_command(command),
            cwd=tmp_path,
            env=tickwork_env(**env),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.fixture
def workers(
    start_process: ProcessStarter, env: dict[str, str]
) -> Callable[[], subprocess.Popen[str]]:
    """Start `tickwork worker` processes on the suite's ``env``."""
    return lambda: start_process("worker", env)


def kill9(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def scalar(rt: Any, sql: str, **params: Any) -> Any:
    with rt.db.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()
