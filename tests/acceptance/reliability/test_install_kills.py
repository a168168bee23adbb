"""`kill -9` a worker in the middle of a ``run_flows`` job, again and again: no install
stays ``started``, and no step runs twice (MetaDeploy's contract: an interrupted install
ends canceled with the retry message; the user retries it)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from schema.installs import JOB_INTERRUPTED
from tests.acceptance.reliability.conftest import Figures, record
from tests.install_data import add_long_install, get_job, marker_pids
from tests.support.processes import ProcessStarter
from tests.support.waiting import wait_for


def test_kill_9_mid_run_flows_repeatedly_never_runs_a_step_twice(
    tmp_path: Path, install_services: Any, start_process: ProcessStarter, soak: bool
) -> None:
    env, runtime, client = install_services
    iterations = 20 if soak else 3
    lost = duplicated = stuck = 0
    worst_s = 0.0
    worker = start_process("worker", {**env, "INSTALL_MARKER": str(tmp_path / "marker-0")})
    orphans: list[int] = []
    try:
        for i in range(iterations):
            marker = tmp_path / f"marker-{i}"
            # Given an install whose first step is running on a worker,
            job_id = add_long_install(client, runtime.db, f"00DKILL{i:03d}")
            wait_for(
                lambda m=marker: bool(marker_pids(m)),
                60,
                f"step {i} started",
                processes=[worker],
            )
            # when that worker is killed with SIGKILL (the step's process is orphaned),
            worker.kill9()
            killed_at = time.monotonic()
            orphans += marker_pids(marker)
            # and a new worker gets the redelivered run_flows message,
            next_marker = tmp_path / f"marker-{i + 1}"
            worker = start_process("worker", {**env, "INSTALL_MARKER": str(next_marker)})
            wait_for(
                lambda j=job_id: get_job(runtime.db, j).status != "started",
                90,
                f"install {i} ended after the kill",
                processes=[worker],
            )
            worst_s = max(worst_s, time.monotonic() - killed_at)
            # then it ends canceled with the retry message, and its steps ran once.
            job = get_job(runtime.db, job_id)
            stuck += int(job.status == "started")
            lost += int(job.status != "canceled" or job.exception != JOB_INTERRUPTED)
            time.sleep(0.5)  # a second execution of the step would write its pid now
            duplicated += max(0, len(marker_pids(marker)) - 1)
            duplicated += int(marker.exists() and "second" in marker.read_text())
    finally:
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    record(Figures("kill -9 mid run_flows", iterations, lost, duplicated, stuck, worst_s))
    assert (lost, duplicated, stuck) == (0, 0, 0)
