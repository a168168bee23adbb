"""A schedule override in the database that names a job no module declares stops
`tickwork worker` and `tickwork scheduler` at start, naming the job (the README's
promise), instead of a worker that runs and a dispatcher that ignores the row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schema.scheduling import ScheduledJobConfig
from tests.conftest import run_tickwork, services_env


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_an_override_for_an_unknown_job_stops_start_up(
    command: str, tmp_path: Path, pg_db: Any, amqp_url: str, queue_prefix: str
) -> None:
    # Given a migrated database holding an override for a job nobody declares,
    with pg_db.session() as session:
        session.add(ScheduledJobConfig(job_name="ghost_job", enabled=False))
    env = services_env(pg_db, amqp_url, queue_prefix, TICKWORK_METRICS_PORT="0")
    # when the process starts,
    try:
        started = run_tickwork(command, cwd=tmp_path, timeout=120, **env)
    finally:  # the session's database is shared: tests that start processes on it
        with pg_db.session() as session:  # without emptying it must not meet the ghost
            session.query(ScheduledJobConfig).filter_by(job_name="ghost_job").delete()
    # then it stops at once with one line naming the job and exit 1 (an operation failed),
    assert started.returncode == 1, started.stdout + started.stderr
    assert "'ghost_job', which is not a registered job" in started.stderr
    assert "Traceback" not in started.stderr
