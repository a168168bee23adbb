"""`kill -9` a worker in the middle of a ``run_flows`` job, again and again: no install
stays ``started``, and no step runs twice (MetaDeploy's contract: an interrupted install
ends canceled with the retry message; the user retries it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from schema.installs import JOB_INTERRUPTED
from tests.acceptance.reliability.conftest import Figures, record
from tests.acceptance.test_install_worker import (
    _create,
    _job,
    _marker_pids,
    _start_worker,
    _wait,
    services,  # noqa: F401  (the fixture)
)


def test_kill_9_mid_run_flows_repeatedly_never_runs_a_step_twice(
    tmp_path: Path,
    services: Any,  # noqa: F811
    soak: bool,
) -> None:
    env, runtime, client = services
    iterations = 20 if soak else 3
    lost = duplicated = stuck = 0
    worst_s = 0.0
    worker = _start_worker(tmp_path, env, INSTALL_MARKER=str(tmp_path / "marker-0"))
    started: list[subprocess.Popen[str]] = [worker]
    orphans: list[int] = []
    try:
        for i in range(iterations):
            marker = tmp_path / f"marker-{i}"
            # Given an install whose first step is running on a worker,
            job_id = _create(client, runtime, f"00DKILL{i:03d}")
            _wait(lambda m=marker: bool(_marker_pids(m)), 60, f"step {i} started", worker)
            # when that worker is killed with SIGKILL (the step's process is orphaned),
            os.killpg(worker.pid, signal.SIGKILL)
            worker.communicate(timeout=20)
            killed_at = time.monotonic()
            orphans += _marker_pids(marker)
            # and a new worker gets the redelivered run_flows message,
            worker = _start_worker(tmp_path, env, INSTALL_MARKER=str(tmp_path / f"marker-{i + 1}"))
            started.append(worker)
            _wait(
                lambda j=job_id: _job(runtime, j).status != "started",
                90,
                f"install {i} ended after the kill",
                worker,
            )
            worst_s = max(worst_s, time.monotonic() - killed_at)
            # then it ends canceled with the retry message, and its steps ran once.
            job = _job(runtime, job_id)
            stuck += int(job.status == "started")
            lost += int(job.status != "canceled" or job.exception != JOB_INTERRUPTED)
            time.sleep(0.5)  # a second execution of the step would write its pid now
            duplicated += max(0, len(_marker_pids(marker)) - 1)
            duplicated += int(marker.exists() and "second" in marker.read_text())
    finally:
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=20)
    record(Figures("kill -9 mid run_flows", iterations, lost, duplicated, stuck, worst_s))
    assert (lost, duplicated, stuck) == (0, 0, 0)
