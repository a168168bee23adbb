"""A real ``tickwork worker`` process running installs: SIGTERM and SIGKILL mid-step."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.client import InstallClient
from schema.installs import JOB_INTERRUPTED, Job
from tests.conftest import FERNET_KEY, run_tickwork, tickwork_command, tickwork_env
from tests.install_data import make_plan, make_user
from tickwork.settings import load_settings
from workers.app import build_runtime


@pytest.fixture
def services(tmp_path: Path, pg_url: str, amqp_url: str, queue_prefix: str) -> Iterator[Any]:
    env = {
        "TICKWORK_DATABASE_URL": pg_url,
        "TICKWORK_BROKER_URL": amqp_url,
        "TICKWORK_QUEUE_PREFIX": queue_prefix,
        "TICKWORK_FERNET_KEY": FERNET_KEY,
        "TICKWORK_WORKER_PROCESSES": "1",
        "TICKWORK_WORKER_THREADS": "2",
        "TICKWORK_WORKER_SHUTDOWN_TIMEOUT_S": "20",
    }
    migrated = run_tickwork("migrate", cwd=tmp_path, **env)
    assert migrated.returncode == 0, migrated.stderr
    settings = load_settings(env)
    runtime = build_runtime(settings)
    from sqlalchemy import text

    with runtime.db.engine.begin() as conn:  # a clean slate for this test's rows
        conn.execute(
            text("TRUNCATE jobs, plans, products, versions, users RESTART IDENTITY CASCADE")
        )
    client = InstallClient(runtime.db, runtime.broker, settings)
    yield env, runtime, client
    runtime.broker.close()
    runtime.db.dispose()


def _start_worker(tmp_path: Path, env: dict[str, str], **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        tickwork_command("worker"),
        cwd=tmp_path,
        env=tickwork_env(**env, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so the test can kill it whole
    )


def _job(runtime: Any, job_id: int) -> Job:
    with runtime.db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _wait(predicate: Any, timeout_s: float, what: str, proc: subprocess.Popen[str] | None) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{what}: worker exited {proc.returncode}:\n{out[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{what}: not seen within {timeout_s} s")


def _marker_pids(marker: Path) -> list[int]:
    return [int(x) for x in marker.read_text().split()] if marker.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _create(client: InstallClient, runtime: Any, org_id: str) -> int:
    plan = make_plan(
        runtime.db,
        [
            (
                "Long step",
                "command",
                'echo step-started; echo $$ >> "$INSTALL_MARKER"; exec sleep 60',
                True,
            ),
            ("Never", "command", 'echo second >> "$INSTALL_MARKER"', True),
        ],
        slug=org_id.lower(),
    )
    user = make_user(runtime.db, name=org_id.lower())
    return client.create_install_job(
        plan_id=plan.plan_id, org_id=org_id, user_id=user, steps=plan.step_ids
    )


def test_sigterm_mid_step_ends_the_job_canceled_with_the_retry_message(
    tmp_path: Path, services: Any
) -> None:
    env, runtime, client = services
    marker = tmp_path / "marker"
    # Given a worker process running a long install step,
    worker = _start_worker(tmp_path, env, INSTALL_MARKER=str(marker))
    try:
        job_id = _create(client, runtime, "00DSIGTERM")
        _wait(lambda: bool(_marker_pids(marker)), 60, "step started", worker)
        # (its output is already in the job's log while it runs),
        _wait(lambda: "step-started" in _job(runtime, job_id).log, 10, "streamed log", worker)
        # when the worker is told to stop (SIGTERM, as Kubernetes does),
        os.kill(worker.pid, signal.SIGTERM)
        out, _ = worker.communicate(timeout=40)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    # then the job ends canceled with the retry message, promptly,
    job = _job(runtime, job_id)
    assert job.status == "canceled", (job.status, job.exception, out[-3000:])
    assert job.exception == JOB_INTERRUPTED and job.canceled_at is not None
    # the step's process was killed, the next step never ran, and the worker exited cleanly.
    (pid,) = _marker_pids(marker)
    assert not _alive(pid)
    assert "second" not in marker.read_text()
    assert worker.returncode == 0, out[-3000:]


def test_a_redelivered_install_after_a_dead_worker_is_interrupted_not_rerun(
    tmp_path: Path, services: Any
) -> None:
    env, runtime, client = services
    marker = tmp_path / "marker"
    # Given a worker that dies (SIGKILL: out of memory, node lost) in the middle of a step,
    first = _start_worker(tmp_path, env, INSTALL_MARKER=str(marker))
    second: subprocess.Popen[str] | None = None
    try:
        job_id = _create(client, runtime, "00DSIGKILL")
        _wait(lambda: bool(_marker_pids(marker)), 60, "step started", first)
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=20)
        assert _job(runtime, job_id).status == "started"
        # when RabbitMQ redelivers its run_flows message to a new worker,
        second = _start_worker(tmp_path, env, INSTALL_MARKER=str(marker))
        _wait(lambda: _job(runtime, job_id).status != "started", 60, "job ended", second)
    finally:
        for pid in _marker_pids(marker):  # the orphaned step of the killed worker
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if second is not None:
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=40)
    # then the job ends interrupted with the retry message, and no step ran a second time.
    job = _job(runtime, job_id)
    assert job.status == "canceled" and job.exception == JOB_INTERRUPTED
    assert len(_marker_pids(marker)) == 1


def test_embedded_run_installs_a_job_written_by_another_process(tmp_path: Path) -> None:
    # Given `tickwork run` (SQLite + in-process broker) in a fresh directory,
    proc = subprocess.Popen(
        tickwork_command("run"),
        cwd=tmp_path,
        env=tickwork_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        from schema.engine import Database

        data_dir = tmp_path / ".tickwork"
        _wait(lambda: (data_dir / "fernet.key").exists(), 60, "embedded start-up", proc)
        settings = load_settings({"TICKWORK_DATA_DIR": str(data_dir)})
        db = Database(settings)

        def migrated() -> bool:
            from sqlalchemy import inspect

            return "jobs" in inspect(db.engine).get_table_names()

        _wait(migrated, 60, "migrated", proc)
        # when another process writes an install job straight into its database
        # (no message: only the enqueuer's minute sweep can find it),
        plan = make_plan(db, [("Echo", "command", "echo embedded install", True)])
        user = make_user(db)
        with db.session() as s:
            job = Job(plan_id=plan.plan_id, org_id="00DEMB", user_id=user, steps=plan.step_ids)
            s.add(job)
            s.flush()
            job_id = job.id
        # then the scheduled enqueuer picks it up within a couple of minutes and it runs.
        _wait(
            lambda: _job_row(db, job_id).status in ("complete", "failed", "canceled"),
            150,
            "embedded install finished",
            proc,
        )
        job = _job_row(db, job_id)
        assert job.status == "complete", job.exception
        assert "embedded install" in job.log
        db.dispose()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]


def _job_row(db: Any, job_id: int) -> Job:
    with db.session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job
