"""A real ``tickwork worker`` process running installs: SIGTERM and SIGKILL mid-step."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from sqlalchemy import inspect

from schema.engine import Database
from schema.installs import JOB_INTERRUPTED, Job
from tests.install_data import add_job, add_long_install, get_job, make_plan, make_user, marker_pids
from tests.support.processes import ProcessStarter
from tests.support.waiting import wait_for
from tickwork.settings import load_settings


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_sigterm_mid_step_ends_the_job_canceled_with_the_retry_message(
    tmp_path: Path, install_services: Any, start_process: ProcessStarter
) -> None:
    env, runtime, client = install_services
    marker = tmp_path / "marker"
    # Given a worker process running a long install step,
    worker = start_process("worker", {**env, "INSTALL_MARKER": str(marker)})
    job_id = add_long_install(client, runtime.db, "00DSIGTERM")
    wait_for(lambda: bool(marker_pids(marker)), 60, "step started", processes=[worker])
    # (its output is already in the job's log while it runs),
    wait_for(
        lambda: "step-started" in get_job(runtime.db, job_id).log,
        10,
        "streamed log",
        processes=[worker],
    )
    # when the worker is told to stop (SIGTERM, as Kubernetes does),
    out = worker.stop(signal.SIGTERM, timeout_s=40)
    # then the job ends canceled with the retry message, promptly,
    job = get_job(runtime.db, job_id)
    assert job.status == "canceled", (job.status, job.exception, out[-3000:])
    assert job.exception == JOB_INTERRUPTED and job.canceled_at is not None
    # the step's process was killed, the next step never ran, and the worker exited cleanly.
    (pid,) = marker_pids(marker)
    assert not _alive(pid)
    assert "second" not in marker.read_text()
    assert worker.returncode == 0, out[-3000:]


def test_a_redelivered_install_after_a_dead_worker_is_interrupted_not_rerun(
    tmp_path: Path, install_services: Any, start_process: ProcessStarter
) -> None:
    env, runtime, client = install_services
    marker = tmp_path / "marker"
    worker_env = {**env, "INSTALL_MARKER": str(marker)}
    # Given a worker that dies (SIGKILL: out of memory, node lost) in the middle of a step,
    first = start_process("worker", worker_env)
    try:
        job_id = add_long_install(client, runtime.db, "00DSIGKILL")
        wait_for(lambda: bool(marker_pids(marker)), 60, "step started", processes=[first])
        first.kill9()
        assert get_job(runtime.db, job_id).status == "started"
        # when RabbitMQ redelivers its run_flows message to a new worker,
        second = start_process("worker", worker_env)
        wait_for(
            lambda: get_job(runtime.db, job_id).status != "started",
            60,
            "job ended",
            processes=[second],
        )
        second.stop(signal.SIGTERM, timeout_s=40)
    finally:
        for pid in marker_pids(marker):  # the orphaned step of the killed worker
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # then the job ends interrupted with the retry message, and no step ran a second time.
    job = get_job(runtime.db, job_id)
    assert job.status == "canceled" and job.exception == JOB_INTERRUPTED
    assert len(marker_pids(marker)) == 1


def test_embedded_run_installs_a_job_written_by_another_process(
    tmp_path: Path, start_process: ProcessStarter
) -> None:
    # Given `tickwork run` (SQLite + in-process broker) in a fresh directory,
    proc = start_process("run")
    data_dir = tmp_path / ".tickwork"
    wait_for((data_dir / "fernet.key").exists, 60, "embedded start-up", processes=[proc])
    db = Database(load_settings({"TICKWORK_DATA_DIR": str(data_dir)}))
    try:
        wait_for(
            lambda: "jobs" in inspect(db.engine).get_table_names(),
            60,
            "migrated",
            processes=[proc],
        )
        # when another process writes an install job straight into its database
        # (no message: only the enqueuer's minute sweep can find it),
        plan = make_plan(db, [("Echo", "command", "echo embedded install", True)])
        job_id = add_job(db, plan, make_user(db), "00DEMB")
        # then the scheduled enqueuer picks it up within a couple of minutes and it runs.
        wait_for(
            lambda: get_job(db, job_id).status in ("complete", "failed", "canceled"),
            150,
            "embedded install finished",
            processes=[proc],
        )
        job: Job = get_job(db, job_id)
        assert job.status == "complete", job.exception
        assert "embedded install" in job.log
    finally:
        db.dispose()
    # and Ctrl-C stops it cleanly.
    out = proc.stop(signal.SIGINT)
    assert proc.returncode == 0, out[-3000:]
