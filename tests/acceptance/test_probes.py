"""Kubernetes probes against a real `tickwork worker` on RabbitMQ and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import run_tickwork, services_env
from tests.support.processes import ProcessStarter
from tests.support.waiting import wait_for


def test_worker_beats_and_probes_answer(
    tmp_path: Path, pg_db: Any, amqp_url: str, queue_prefix: str, start_process: ProcessStarter
) -> None:
    beat = tmp_path / "heartbeat"
    env = services_env(
        pg_db,
        amqp_url,
        queue_prefix,
        TICKWORK_HEARTBEAT_FILE=str(beat),
        TICKWORK_HEARTBEAT_INTERVAL_S="0.5",
        TICKWORK_METRICS_PORT="0",
    )
    # Given a real worker process,
    worker = start_process("worker --processes 1 --threads 2", env)
    try:
        wait_for(beat.exists, 60, "the worker's heartbeat file", processes=[worker])
        # then it beats, and both probes pass;
        live = run_tickwork("probe", "liveness", "--max-age-s", "5", cwd=tmp_path, **env)
        assert live.returncode == 0, live.stderr
        ready = run_tickwork("probe", "readiness", cwd=tmp_path, **env)
        assert ready.returncode == 0, ready.stderr
        # and readiness (not liveness) fails, in one line, when the broker is unreachable.
        down = {**env, "TICKWORK_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/%2F"}
        not_ready = run_tickwork("probe", "readiness", "--timeout-s", "1", cwd=tmp_path, **down)
        assert not_ready.returncode == 1 and "broker not reachable" in not_ready.stderr
        still_live = run_tickwork("probe", "liveness", "--max-age-s", "5", cwd=tmp_path, **down)
        assert still_live.returncode == 0
    finally:
        worker.stop()
