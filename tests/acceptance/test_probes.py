"""Kubernetes probes against a real `tickwork worker` on RabbitMQ and PostgreSQL."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import FERNET_KEY, run_tickwork, tickwork_command, tickwork_env


def test_worker_beats_and_probes_answer(
    tmp_path: Path, pg_db: Any, amqp_url: str, queue_prefix: str
) -> None:
    beat = tmp_path / "heartbeat"
    env = {
        "TICKWORK_DATABASE_URL": pg_db.engine.url.render_as_string(hide_password=False),
        "TICKWORK_BROKER_URL": amqp_url,
        "TICKWORK_FERNET_KEY": FERNET_KEY,
        "TICKWORK_QUEUE_PREFIX": queue_prefix,
        "TICKWORK_HEARTBEAT_FILE": str(beat),
        "TICKWORK_HEARTBEAT_INTERVAL_S": "0.5",
        "TICKWORK_METRICS_PORT": "0",
    }
    # Given a real worker process,
    worker = subprocess.Popen(
        tickwork_command("worker", "--processes", "1", "--threads", "2"),
        cwd=tmp_path,
        env=tickwork_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not beat.exists() and time.monotonic() < deadline:
            assert worker.poll() is None, "worker exited"
            time.sleep(0.2)
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
        worker.terminate()
        worker.wait(60)
