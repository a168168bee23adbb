"""The reference benchmarks of ../shared/bench (raw pika, bare Dramatiq, Celery), run as
they are, in subprocesses of this run, on the same RabbitMQ; their printed rates parsed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.bench.figures import Results

REPO_ROOT = Path(__file__).resolve().parents[2]


def anchor_dir() -> Path:
    """``../shared/bench`` beside the checkout, or ``TICKWORK_BENCH_ANCHORS``."""
    folder = Path(os.environ.get("TICKWORK_BENCH_ANCHORS") or REPO_ROOT.parent / "shared" / "bench")
    if not (folder / "anchor_pika.py").exists():
        raise FileNotFoundError(
            f"reference benchmarks not found in {folder}: set TICKWORK_BENCH_ANCHORS to the "
            "folder holding anchor_pika.py, anchor_dramatiq.py and anchor_celery.py"
        )
    return folder


def _run(script: str, *args: str, amqp_url: str, timeout_s: float = 600) -> str:
    env = {**os.environ, "AMQP_URL": amqp_url}
    done = subprocess.run(
        [sys.executable, script, *args],
        cwd=anchor_dir(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def rate(output: str, label: str) -> float:
    """The msg/s figure printed after ``label`` (e.g. ``drain`` in ``drain 2000 msg/s``)."""
    found = re.search(re.escape(label) + r"(?:\([^)]*\))?\s+(\d+(?:\.\d+)?)\s+msg/s", output)
    if found is None:
        raise ValueError(f"no {label!r} rate in reference output: {output.strip()!r}")
    return float(found.group(1))


def measure_pika(results: Results, n: int, amqp_url: str) -> None:
    out = _run("anchor_pika.py", str(n), amqp_url=amqp_url)
    results.add("raw pika publish", "msg/s", rate(out, "publish"))
    results.add("raw pika consume+ack", "msg/s", rate(out, "consume+ack"))


def measure_dramatiq(results: Results, n: int, threads: int, amqp_url: str) -> None:
    out = _run("anchor_dramatiq.py", str(n), str(threads), amqp_url=amqp_url)
    results.add("bare Dramatiq enqueue", "msg/s", rate(out, "enqueue"))
    results.add("bare Dramatiq drain", "msg/s", rate(out, "drain"))


def measure_celery(results: Results, n: int, amqp_url: str) -> None:
    out = _run("anchor_celery.py", str(n), amqp_url=amqp_url)
    results.add("Celery enqueue", "msg/s", rate(out, "enqueue"))
    results.add("Celery drain (incl. worker start)", "msg/s", rate(out, "drain"))
