"""Real tickwork processes: the embedded system, and worker + scheduler on RabbitMQ."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.conftest import run_tickwork, services_env
from tests.support.processes import ProcessStarter
from tests.support.waiting import heartbeat_recorded, wait_for


def test_tickwork_run_records_a_heartbeat_and_stops_cleanly(
    tmp_path: Path, start_process: ProcessStarter
) -> None:
    # Given a fresh directory and nothing configured,
    # when `tickwork run` starts,
    proc = start_process("run")
    database = tmp_path / ".tickwork" / "tickwork.sqlite3"
    # then the heartbeat job runs and is recorded,
    wait_for(lambda: heartbeat_recorded(database), 45, "heartbeat run in SQLite", processes=[proc])
    # and Ctrl-C stops it cleanly.
    out = proc.stop(signal.SIGINT, timeout_s=40)
    assert proc.returncode == 0, out[-2000:]
    assert "stopped" in out


def test_worker_and_scheduler_processes_on_rabbitmq_and_postgres(
    tmp_path: Path, pg_url: str, amqp_url: str, queue_prefix: str, start_process: ProcessStarter
) -> None:
    env = services_env(
        pg_url, amqp_url, queue_prefix, TICKWORK_WORKER_PROCESSES="1", TICKWORK_WORKER_THREADS="2"
    )
    migrated = run_tickwork("migrate", cwd=tmp_path, **env)
    assert migrated.returncode == 0, migrated.stderr
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM job_runs"))
        conn.execute(text("DELETE FROM scheduler_state"))
    # Given a worker and a scheduler on RabbitMQ and PostgreSQL,
    worker = start_process("worker", env)
    scheduler = start_process("scheduler", env)

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
        # when a minute's tick comes, then the heartbeat is dispatched and run by the worker,
        wait_for(heartbeat_done, 60, "heartbeat run in PostgreSQL", processes=[worker, scheduler])
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT worker, trigger FROM job_runs WHERE job_name='heartbeat'")
            ).first()
        assert row is not None and row.trigger == "schedule" and row.worker
    finally:
        engine.dispose()
    # and SIGTERM stops both cleanly: exit 0, one "stopped" line each, no traceback.
    scheduler_out = scheduler.stop(signal.SIGTERM, timeout_s=40)
    worker_out = worker.stop(signal.SIGTERM, timeout_s=40)
    assert worker.returncode == 0, worker_out[-2000:]
    assert scheduler.returncode == 0, scheduler_out[-2000:]
    assert "Traceback" not in scheduler_out, scheduler_out[-2000:]
    assert "Traceback" not in worker_out, worker_out[-3000:]
    assert scheduler_out.count("scheduler stopped (SIGTERM)") == 1, scheduler_out[-2000:]
    assert worker_out.count("tickwork worker stopped") == 1, worker_out[-2000:]


def test_check_reports_each_part(tmp_path: Path, pg_db: Any, amqp_url: str) -> None:
    # pg_db: the session database, emptied first (other tests leave job configs behind).
    env = services_env(pg_db, TICKWORK_BROKER_URL=amqp_url)
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
