"""The reliability suite: real `tickwork worker` processes on the real RabbitMQ and
PostgreSQL, killed, stopped and fed poison. Each scenario records its figures; the
table (scenario, iterations, lost, duplicated, stuck, max recovery time) is printed at
the end of the run. `--soak` runs the long versions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import run_tickwork, services_env
from tests.support.processes import Process, ProcessStarter


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


def suite_env(tmp_path: Path, database: Any, amqp_url: str, queue_prefix: str) -> dict[str, str]:
    """The settings of the suite's processes, on a migrated database (a URL or a
    ``Database``); ``queue_prefix`` is unique per test, its queues deleted after."""
    values = services_env(
        database,
        amqp_url,
        queue_prefix,
        TICKWORK_JOB_MODULES="tests.acceptance.reliability.jobs",
        TICKWORK_WORKER_PROCESSES="1",
        TICKWORK_WORKER_THREADS="4",
        TICKWORK_WORKER_SHUTDOWN_TIMEOUT_S="20",
        TICKWORK_METRICS_PORT="0",
        TICKWORK_MIN_BACKOFF_MS="100",
        TICKWORK_MAX_BACKOFF_MS="500",
        TICKWORK_HEARTBEAT_FILE=str(tmp_path / "heartbeat"),
        # A killed worker's run is taken over 3 heartbeats later: 6 s here, 15 s by default.
        TICKWORK_RUN_HEARTBEAT_S="2",
    )
    migrated = run_tickwork("migrate", cwd=tmp_path, **values)
    assert migrated.returncode == 0, migrated.stderr
    return values


@pytest.fixture
def env(tmp_path: Path, pg_db: Any, amqp_url: str, queue_prefix: str) -> dict[str, str]:
    return suite_env(tmp_path, pg_db, amqp_url, queue_prefix)


@pytest.fixture
def runtime(env: dict[str, str]) -> Iterator[Any]:
    """This test process as a producer on the same database and broker."""
    from tickwork.settings import load_settings
    from workers.app import build_runtime

    rt = build_runtime(load_settings(env))
    yield rt
    rt.broker.close()
    rt.db.dispose()


@pytest.fixture
def workers(start_process: ProcessStarter, env: dict[str, str]) -> Callable[[], Process]:
    """Start `tickwork worker` processes on the suite's ``env`` (logs: worker-<n>.log)."""
    return lambda: start_process("worker", env)


@pytest.fixture
def broker_env(env: dict[str, str], rabbit: Any) -> dict[str, str]:
    """The suite's ``env`` on the private RabbitMQ node of the test module's ``rabbit``
    fixture, with a scheduled job too (``rel_minutely``)."""
    return {
        **env,
        "TICKWORK_BROKER_URL": rabbit.url,
        "TICKWORK_JOB_MODULES": (
            "tests.acceptance.reliability.jobs,tests.acceptance.reliability.scheduled_jobs"
        ),
    }


def executions(marker: Path) -> list[str]:
    """The run id of each execution of ``rel_work`` that wrote a (whole) line to ``marker``."""
    if not marker.exists():
        return []
    return [line.split()[0] for line in marker.read_text().split("\n")[:-1]]


def scalar(rt: Any, sql: str, **params: Any) -> Any:
    with rt.db.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()
