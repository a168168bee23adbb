"""Multiprocess set-up, in fresh interpreters (prometheus_client decides at import).

Given / when / then: stale files are wiped, two worker processes' counters add up,
and importing prometheus_client too early is refused with a clear error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO_ROOT


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR",)}
    environ["PYTHONPATH"] = str(REPO_ROOT)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def test_counters_of_forked_workers_add_up_and_stale_files_are_wiped(tmp_path: Path) -> None:
    # Given a directory left by a dead worker tree (pid that cannot exist),
    stale = tmp_path / "worker-4194999"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"garbage")
    code = f"""
        import os, sys
        from pathlib import Path
        from workers.metrics.multiprocess import configure_multiprocess, is_multiprocess
        directory = configure_multiprocess("worker", Path({str(tmp_path)!r}))
        assert os.environ["dramatiq_prom_db"] == str(directory)
        from prometheus_client import CollectorRegistry, Counter, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        assert is_multiprocess()
        runs = Counter("t_runs_total", "runs", ["job"])
        pids = []
        for n in (2, 3):  # two forked workers, like dramatiq's CLI
            pid = os.fork()
            if pid == 0:
                runs.labels(job="a").inc(n)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))
        sys.stdout.write(generate_latest(registry).decode())
        sys.stdout.write("DIR=" + str(directory))
    """
    # when the worker tree starts and its two processes count runs,
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    # then the exposition sums both processes,
    assert 't_runs_total{job="a"} 5.0' in result.stdout
    # the stale directory is gone, and this tree has its own.
    assert not stale.exists()
    assert result.stdout.rsplit("DIR=", 1)[1].startswith(str(tmp_path / "worker-"))


def test_importing_prometheus_client_first_is_refused(tmp_path: Path) -> None:
    # Given prometheus_client already imported in single-process mode,
    code = f"""
        import prometheus_client
        from pathlib import Path
        from workers.metrics.multiprocess import configure_multiprocess
        configure_multiprocess("worker", Path({str(tmp_path)!r}))
    """
    # when multiprocess mode is configured, then start-up fails saying why.
    result = run_python(code)
    assert result.returncode != 0
    assert "prometheus_client was imported before the multiprocess directory" in result.stderr


def test_worker_broker_gets_dramatiq_prometheus_without_its_own_port(tmp_path: Path) -> None:
    # Given a worker process in multiprocess mode on RabbitMQ settings,
    code = f"""
        from pathlib import Path
        from workers.metrics.multiprocess import configure_multiprocess
        configure_multiprocess("worker", Path({str(tmp_path)!r}))
        from tickwork.settings import load_settings
        from workers.broker import build_middleware
        settings = load_settings({{"TICKWORK_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F"}})
        from workers.app import serve_worker_metrics
        stack = build_middleware(settings, lambda: None, metrics_fork=serve_worker_metrics)
        names = [type(m).__name__ for m in stack]
        forks = [f.__module__ + ":" + f.__name__ for m in stack for f in m.forks]
        print(names[0], forks)
    """
    # when its middleware is built,
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    # then Dramatiq's Prometheus middleware comes first and the only fork is tickwork's
    # metrics server (Dramatiq's own server on 9191 is not started).
    assert result.stdout.strip() == ("DramatiqPrometheus ['workers.app:serve_worker_metrics']")
