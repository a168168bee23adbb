"""The heartbeat behind the liveness probe, and `tickwork probe liveness`."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from tests.conftest import run_tickwork
from tests.support.waiting import wait_for
from workers.heartbeat import Heartbeat, age_s


def test_heartbeat_beats_while_alive_and_stops_when_not(tmp_path: Path) -> None:
    path = tmp_path / "hb" / "beat"
    alive = [True]
    heartbeat = Heartbeat(path, interval_s=0.05, alive=lambda: alive[0])
    # Given a heartbeat started while the worker threads are alive, then it beats;
    heartbeat.start()
    wait_for(lambda: age_s(path) is not None, 5, "the first beat")
    assert (age_s(path) or 0) < 1
    # When the worker threads die, the beat stops and the file ages.
    alive[0] = False
    time.sleep(0.2)
    stale = age_s(path) or 0
    time.sleep(0.2)
    assert (age_s(path) or 0) > stale
    heartbeat.stop()


def test_probe_liveness_reads_the_heartbeat_age(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    env = {"TICKWORK_HEARTBEAT_FILE": str(path)}
    missing = run_tickwork("probe", "liveness", cwd=tmp_path, **env)
    assert missing.returncode == 1 and "no heartbeat yet" in missing.stderr
    path.touch()
    fresh = run_tickwork("probe", "liveness", cwd=tmp_path, **env)
    assert fresh.returncode == 0 and fresh.stdout.startswith("alive")
    old = time.time() - 600
    os.utime(path, (old, old))
    stale = run_tickwork("probe", "liveness", "--max-age-s", "60", cwd=tmp_path, **env)
    assert stale.returncode == 1 and re.search(r"last heartbeat 6\d\d s ago", stale.stderr)
    assert len(stale.stderr.strip().splitlines()) == 1
