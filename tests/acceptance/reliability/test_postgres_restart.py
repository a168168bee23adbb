"""PostgreSQL restarted under load: no run record is lost, stuck or duplicated; the
worker rides the outage out (its run-record writer and Dramatiq's retries) and goes on.

The database is a private server (tests/acceptance/reliability/private_postgres.py):
the shared one on 127.0.0.1:5432 is never stopped. RabbitMQ is the shared one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.acceptance.reliability.conftest import Figures, executions, record, scalar, suite_env
from tests.acceptance.reliability.private_postgres import (  # noqa: F401 (a fixture)
    PrivatePostgres,
    private_pg,
)
from tests.support.processes import Process
from tests.support.waiting import wait_for

DOWN_S = 5.0


@pytest.fixture
def env(
    tmp_path: Path,
    private_pg: PrivatePostgres,  # noqa: F811
    amqp_url: str,
    queue_prefix: str,
) -> dict[str, str]:
    """The reliability suite's `env`, on the private PostgreSQL (it overrides conftest's,
    so `runtime` is this test process on the private database)."""
    return suite_env(tmp_path, private_pg.url, amqp_url, queue_prefix)


def test_postgres_restart_under_load_loses_no_run(
    tmp_path: Path,
    runtime: Any,
    private_pg: PrivatePostgres,  # noqa: F811
    workers: Callable[[], Process],
    soak: bool,
) -> None:
    worker = workers()
    total = 2000 if soak else 300
    seconds = 0.05 if soak else 0.12  # ~10 s of work for 4 threads in the short version
    marker = tmp_path / "executions"
    # Given a worker busy with a queue of short jobs,
    actor = runtime.broker.get_actor("rel_work")
    sent = {actor.send(seconds=seconds, marker=str(marker)).message_id for _ in range(total)}
    assert len(sent) == total
    wait_for(
        lambda: len(executions(marker)) > total // 5, 120, "work under way", processes=[worker]
    )
    # when PostgreSQL is stopped (fast: connections cut) for a few seconds and started again,
    before = len(executions(marker))
    private_pg.restart(DOWN_S)
    back_at = time.monotonic()
    during = len(executions(marker)) - before
    assert before + during < total, "the work was over before the outage: make the jobs longer"
    resumed = wait_for(
        lambda: len(executions(marker)) > before + during, 60, "work resumed", processes=[worker]
    )
    # then every job ends in exactly one succeeded record, and the worker is still there.
    wait_for(
        lambda: (
            scalar(
                runtime, "SELECT count(DISTINCT message_id) FROM job_runs WHERE status='succeeded'"
            )
            >= total
        ),
        120,
        "all runs succeeded after the restart",
        processes=[worker],
    )
    recovery = time.monotonic() - back_at
    time.sleep(1.0)  # a late duplicate (a retried message) would show up now
    with runtime.db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT message_id, status, attempts FROM job_runs WHERE job_name='rel_work'")
        ).all()
    per_message: dict[str, list[str]] = {}
    for message_id, status, _attempts in rows:
        per_message.setdefault(message_id, []).append(status)
    succeeded = {m for m, statuses in per_message.items() if statuses == ["succeeded"]}
    lost = len(sent - succeeded)
    duplicated = sum(len(s) - 1 for s in per_message.values()) + len(set(per_message) - sent)
    stuck = sum(1 for _m, status, _a in rows if status in ("running", "queued"))
    retried = sum(1 for _m, _s, attempts in rows if attempts > 1)
    executed = len(executions(marker))
    warnings = worker.output().count("database unreachable")
    record(Figures("restart PostgreSQL under load", total, lost, duplicated, stuck, recovery))
    print(
        f"\npostgres restart: down {DOWN_S} s, {during} executions during the outage, "
        f"writer retried {warnings} times, work resumed {resumed:.1f} s after the start, "
        f"all succeeded {recovery:.1f} s after it; {executed} executions for {total} jobs, "
        f"{retried} runs with attempts > 1"
    )
    assert (lost, duplicated, stuck) == (0, 0, 0), worker.output()[-4000:]
    assert worker.poll() is None, f"the worker exited:\n{worker.output()[-4000:]}"
