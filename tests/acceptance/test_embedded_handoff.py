"""Embedded mode, two terminals: what the CLI starts, the running `tickwork run` runs.

The CLI's own in-process broker has no workers, so it only records the run; the running
`tickwork run` sends it from its outbox. With no `tickwork run` alive, the CLI says so
and records nothing (issue 17, defect 2).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import run_tickwork
from tests.support.processes import ProcessStarter
from tests.support.waiting import heartbeat_recorded, wait_for


def _status(database: Path, run_id: int) -> str | None:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT status FROM job_runs WHERE id = :id"), {"id": run_id}
            ).scalar()
    finally:
        engine.dispose()


def _count_runs(database: Path) -> int:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM job_runs")).scalar() or 0)
    finally:
        engine.dispose()


def test_run_now_from_a_second_terminal_is_run_by_tickwork_run(
    tmp_path: Path, start_process: ProcessStarter
) -> None:
    database = tmp_path / ".tickwork" / "tickwork.sqlite3"
    # Given no `tickwork run` for this folder, when a job is run now from the CLI,
    refused = run_tickwork("jobs", "trigger", "heartbeat", cwd=tmp_path)
    # then it is refused, saying why, and nothing is recorded.
    assert refused.returncode == 1, refused.stderr
    assert "no `tickwork run` is running" in refused.stderr
    assert _count_runs(database) == 0

    # Given `tickwork run` running in the folder (the heartbeat job recorded),
    proc = start_process("run")
    wait_for(lambda: heartbeat_recorded(database), 45, "tickwork run working", processes=[proc])
    # when a job is run now from a second terminal,
    started = run_tickwork("jobs", "trigger", "heartbeat", "--force", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    found = re.search(r"queued run (\d+) of heartbeat", started.stdout)
    assert found, started.stdout
    run_id = int(found.group(1))
    # then the running system runs it within seconds.
    wait_for(
        lambda: _status(database, run_id) == "succeeded",
        10,
        f"run {run_id} run by tickwork run",
        processes=[proc],
    )
    out = proc.stop(signal.SIGINT, timeout_s=40)
    assert proc.returncode == 0, out[-2000:]
