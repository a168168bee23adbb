"""Jobs the reliability suite's worker processes run (TICKWORK_JOB_MODULES)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from workers.context import RunContext
from workers.registry import job


@job(description="reliability: works for a while, leaving one line per execution", max_retries=3)
def rel_work(ctx: RunContext, seconds: float = 0.02, marker: str = "") -> int:
    if marker:
        with Path(marker).open("a") as out:
            out.write(f"{ctx.run_id} {os.getpid()} {time.time():.3f}\n")
    time.sleep(seconds)
    return 1


@job(description="reliability: kills its own worker process (SIGKILL) at every delivery")
def rel_kill_worker(ctx: RunContext, marker: str = "") -> int:
    if marker:
        with Path(marker).open("a") as out:
            out.write(f"{ctx.run_id} {os.getpid()} {time.time():.3f}\n")
    os.kill(os.getpid(), signal.SIGKILL)
    return 0  # never reached
