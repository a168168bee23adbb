"""Real tickwork processes: the embedded system, and worker + scheduler on RabbitMQ."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.conftest import FERNET_KEY, run_tickwork, tickwork_command, tickwork_env


def _wait_for(predicate: Any, timeout_s: float, what: str, procs: list[Any]) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        for proc in procs:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"{what}: process exited {proc.returncode}:\n{out[-3000:]}")
        time.sleep(0.25)
    raise AssertionError(f"{what}: not seen within {timeout_s} s")


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout_s: float = 40) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout_s)
    return out


def test_tickwork_run_records_a_heartbeat_and_stops_cleanly(tmp_path: Path) -> None:
    # Given a fresh directory and nothing configured,
    proc = subprocess.Popen(
        tickwork_command("run"),
        cwd=tmp_path,
        env=tickwork_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    database = tmp_path / ".tickwork" / "tickwork.sqlite3"

    def heartbeat_recorded() -> bool:
        if not database.exists():
            return False
        try:
            with sqlite3.connect(database) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM job_runs WHERE job_name='heartbeat' "
                    "AND status='succeeded'"
                ).fetchone()
        except sqlite3.OperationalError:
            return False
        return bool(row and row[0] >= 1)

    try:
        # when `tickwork run` starts, then the heartbeat job runs and is recorded,
        _wait_for(heartbeat_recorded, 45, "heartbeat run in SQLite", [proc])
    finally:
        out = _stop(proc, signal.SIGINT)
    # and Ctrl-C stops it cleanly.
    assert proc.returncode == 0, out[-2000:]
    assert "stopped" in out


def test_worker_and_scheduler_processes_on_rabbitmq_and_postgres(
    tmp_path: Path, pg_url: str, amqp_url: str, queue_prefix: str
) -> None:
    env = {
        "TICKWORK_DATABASE_URL": pg_url,
        "TICKWORK_BROKER_URL": amqp_url,
        "TICKWORK_QUEUE_PREFIX": queue_prefix,
        "TICKWORK_FERNET_KEY": FERNET_KEY,
        "TICKWORK_WORKER_PROCESSES": "1",
        "TICKWORK_WORKER_THREADS": "2",
    }
    migrated = run_tickwork("migrate", cwd=tmp_path, **env)
    assert migrated.returncode == 0, migrated.stderr
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM job_runs"))
        conn.execute(text("DELETE FROM scheduler_state"))
    worker = subprocess.Popen(
        tickwork_command("worker"),
        cwd=tmp_path,
        env=tickwork_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    scheduler = subprocess.Popen(
        tickwork_command("scheduler"),
        cwd=tmp_path,
        env=tickwork_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def heartbeat_done() -> bool:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM job_runs "
                        "WHERE job_name='heartbeat' AND status='succeeded'"
                    )
                ).scalar()
            )

    try:
        _wait_for(heartbeat_done, 60, "heartbeat run in PostgreSQL", [worker, scheduler])
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT worker, trigger FROM job_runs WHERE job_name='heartbeat'")
            ).first()
        assert row is not None and row.trigger == "schedule" and row.worker
    finally:
        scheduler_out = _stop(scheduler)
        worker_out = _stop(worker)
        engine.dispose()
    # SIGTERM stops both cleanly: exit 0, one "stopped" line each, no traceback.
    assert worker.returncode == 0, worker_out[-2000:]
    assert scheduler.returncode == 0, scheduler_out[-2000:]
    assert "Traceback" not in scheduler_out, scheduler_out[-2000:]
    assert "Traceback" not in worker_out, worker_out[-3000:]
    assert scheduler_out.count("scheduler stopped (SIGTERM)") == 1, scheduler_out[-2000:]
    assert worker_out.count("tickwork worker stopped") == 1, worker_out[-2000:]


def test_check_reports_each_part(tmp_path: Path, pg_db: Any, amqp_url: str) -> None:
    # pg_db: the session database, emptied first (other tests leave job configs behind).
    env = {
        "TICKWORK_DATABASE_URL": pg_db.engine.url.render_as_string(hide_password=False),
        "TICKWORK_BROKER_URL": amqp_url,
        "TICKWORK_FERNET_KEY": FERNET_KEY,
    }
    assert run_tickwork("migrate", cwd=tmp_path, **env).returncode == 0
    result = run_tickwork("check", cwd=tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    # a table: result, check, detail (one row per check when piped)
    rows = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert any(row.startswith("ok database reachable, at head") for row in rows), rows
    assert "ok broker RabbitMQ reachable" in rows, rows
    down = run_tickwork(
        "check", cwd=tmp_path, **{**env, "TICKWORK_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/"}
    )
    rows = [" ".join(line.split()) for line in down.stdout.splitlines()]
    assert down.returncode == 1 and any(row.startswith("FAIL broker") for row in rows), rows
