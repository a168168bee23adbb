"""Workers killed with SIGKILL mid-run and stopped with SIGTERM under load: no run is lost,
stuck or duplicated."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.acceptance.reliability.conftest import Figures, executions, record, scalar
from tests.support.processes import Process
from tests.support.waiting import wait_for


def test_kill_9_mid_maintenance_run_completes_the_run_once(
    tmp_path: Path, runtime: Any, workers: Callable[[], Process], soak: bool
) -> None:
    iterations = 10 if soak else 2
    worst = 0.0
    lost = duplicated = stuck = 0
    for i in range(iterations):
        marker = tmp_path / f"marker-{i}"
        # Given a maintenance run in progress on a worker,
        worker = workers()
        sent = runtime.broker.get_actor("rel_work").send(seconds=3.0, marker=str(marker))
        wait_for(lambda m=marker: bool(executions(m)), 60, "run started", processes=[worker])
        run_id = scalar(runtime, "SELECT id FROM job_runs WHERE message_id=:m", m=sent.message_id)
        # when the worker is killed with SIGKILL,
        worker.kill9()
        killed_at = time.monotonic()
        # and a new worker comes up, then the run is finished exactly once.
        replacement = workers()
        wait_for(
            lambda r=run_id: (
                scalar(runtime, "SELECT status FROM job_runs WHERE id=:i", i=r) == "succeeded"
            ),
            90,
            "run finished after the kill",
            processes=[replacement],
        )
        worst = max(worst, time.monotonic() - killed_at)
        replacement.kill9()
        rows = scalar(runtime, "SELECT count(*) FROM job_runs WHERE id=:i", i=run_id)
        lost += int(rows == 0)
        status = scalar(runtime, "SELECT status FROM job_runs WHERE id=:i", i=run_id)
        stuck += int(status == "running")
        duplicated += int(
            scalar(
                runtime,
                "SELECT count(*) FROM job_runs WHERE job_name='rel_work' AND status='succeeded'",
            )
            > i + 1
        )
    record(Figures("kill -9 mid maintenance run", iterations, lost, duplicated, stuck, worst))
    assert (lost, duplicated, stuck) == (0, 0, 0)


def test_sigterm_under_load_loses_nothing(
    tmp_path: Path, runtime: Any, workers: Callable[[], Process], soak: bool
) -> None:
    total = 1000 if soak else 200
    marker = tmp_path / "executions"
    # Given a queue of short jobs and a worker busy with them,
    actor = runtime.broker.get_actor("rel_work")
    for _ in range(total):
        actor.send(seconds=0.02, marker=str(marker))
    worker = workers()
    wait_for(
        lambda: len(executions(marker)) > total // 5, 120, "work under way", processes=[worker]
    )
    # when it is stopped with SIGTERM mid-stream (in-flight work finishes or is requeued),
    stopped_at = time.monotonic()
    worker.terminate()
    assert worker.wait(60) == 0
    # and another worker takes over, then every job ran to a succeeded record, once.
    replacement = workers()
    wait_for(
        lambda: scalar(runtime, "SELECT count(*) FROM job_runs WHERE status='succeeded'") >= total,
        180,
        "all runs succeeded",
        processes=[replacement],
    )
    recovery = time.monotonic() - stopped_at
    succeeded = scalar(runtime, "SELECT count(*) FROM job_runs WHERE status='succeeded'")
    records = scalar(runtime, "SELECT count(*) FROM job_runs")
    # A job interrupted by the shutdown (Dramatiq's ShutdownNotifications) is requeued and
    # started again: its marker line appears twice, but it completes once, in one record.
    record(
        Figures(
            "SIGTERM a worker under load",
            total,
            lost=total - succeeded,
            duplicated=max(0, records - total),
            stuck=scalar(runtime, "SELECT count(*) FROM job_runs WHERE status='running'"),
            max_recovery_s=recovery,
        )
    )
    assert succeeded == total and records == total
    assert scalar(runtime, "SELECT max(attempts) FROM job_runs") <= 2
