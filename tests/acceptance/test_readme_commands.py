"""Every command in the README's ``bash`` blocks is run here, as written, from a fresh
directory, so the README cannot drift from the code.

Substitutions, all of which the README itself implies: ``<repository-url>`` is this
checkout; the production block's example hosts (``db``, ``rabbitmq``) are the test's own
PostgreSQL database and RabbitMQ queue prefix; long-running processes are started, seen
working, then stopped with the signal the README names. A command no test covers fails
``test_every_readme_command_is_run_by_a_test``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO_ROOT, free_port, postgres_database
from tests.support.processes import Process
from tests.support.waiting import heartbeat_recorded, http_ok, wait_for

README = (REPO_ROOT / "README.md").read_text()
# How often the processes are looked at. A signal in a process's first few milliseconds
# can find it half started (the worker's own process may exit 1): what this test checks
# is a started process, seen working, stopping cleanly.
POLL_S = 0.3
BLOCKS = re.findall(r"```bash\n(.*?)\n```", README, re.S)


def commands(block: str) -> list[str]:
    """The block's command lines, comments stripped (a ``#`` inside quotes is kept)."""
    lines = []
    for line in block.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def block_starting(prefix: str) -> list[str]:
    found = [commands(b) for b in BLOCKS if commands(b) and commands(b)[0].startswith(prefix)]
    assert found, f"the README has no bash block starting with {prefix!r}"
    return found[0]


# Which test runs each README command (a regex on the command line).
COVERED: dict[str, str] = {
    r"^git clone <repository-url> tickwork && cd tickwork$": "test_quick_start",
    r"^python3 -m venv \.venv && \. \.venv/bin/activate && pip install -e \. && tickwork run$": (
        "test_quick_start"
    ),
    r"^bash scripts/test\.sh$": "tests/unit/test_readme.py::test_ci_runs_the_readme_test_command",
    r"^bash scripts/lock\.sh$": "test_lock_refresh_leaves_a_fresh_clone_unchanged",
    r"^export TICKWORK_": "test_production_commands",
    r"^tickwork (keygen|migrate|check|worker|scheduler|api)$": "test_production_commands",
    r"^kubectl apply -k deploy/k8s/overlays/prod$": "test_kubernetes_command_renders",
    r"^tickwork (jobs|hold|release|schedule|settings)( |$)": "test_operating_commands",
}


def test_every_readme_command_is_run_by_a_test() -> None:
    every = [line for block in BLOCKS for line in commands(block)]
    assert len(every) >= 15, "the README lost its commands"
    for line in every:
        assert any(re.search(pattern, line) for pattern in COVERED), (
            f"README command not run by any test: {line!r}; add it to COVERED and a test"
        )


# --- helpers ----------------------------------------------------------------------
def clean_env(**extra: str) -> dict[str, str]:
    """The environment a newcomer has: no TICKWORK_*, this venv's tools first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWORK_")}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def bash(
    script: str, cwd: Path, env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{script}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, (
        f"{what}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def start(script: str, cwd: Path, env: dict[str, str], log: Path) -> Process:
    """``bash -c script``, not the ``start_process`` fixture: the README's commands run as
    written, through bash, from the fresh clone's own virtualenv, in a newcomer's
    environment (not this checkout's on PYTHONPATH)."""
    return Process(["bash", "-c", script], cwd=cwd, env=env, log=log)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """``git clone <repository-url> tickwork && cd tickwork``, with this checkout as the URL
    (its committed HEAD: CI runs on a clean checkout, so that is what is tested)."""
    first = block_starting("git clone")[0]
    script = first.replace("<repository-url>", str(REPO_ROOT)).replace(" && cd tickwork", "")
    ok(bash(script, tmp_path, clean_env()), first)
    return tmp_path / "tickwork"


# --- the quick start ----------------------------------------------------------------
def test_quick_start(clone: Path, tmp_path: Path) -> None:
    # Given a fresh clone and the README's run command,
    run_line = block_starting("git clone")[1]
    install, _, run = run_line.rpartition(" && ")
    assert run == "tickwork run"
    # when its set-up part runs as written (a new virtualenv, pip install -e .),
    ok(bash(install, clone, clean_env(), timeout_s=900), install)
    # and `tickwork run` starts (on a free port: another tickwork may hold 8080 here),
    env = clean_env(TICKWORK_API_PORT=str(free_port()))
    log = tmp_path / "run.log"
    proc = start(". .venv/bin/activate && exec tickwork run", clone, env, log)
    database = clone / ".tickwork" / "tickwork.sqlite3"
    try:
        # then the heartbeat job runs within seconds,
        wait_for(
            lambda: heartbeat_recorded(database),
            60,
            "heartbeat recorded by `tickwork run`",
            processes=[proc],
            poll_s=POLL_S,
        )
        # and `tickwork jobs` in another terminal shows it,
        listing = ok(
            bash(". .venv/bin/activate && tickwork jobs", clone, clean_env()), "tickwork jobs"
        )
        assert "heartbeat" in listing
    finally:
        out = proc.stop(signal.SIGINT, group=True)  # Ctrl-C: the terminal's whole group
    # and Ctrl-C stops it cleanly.
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


def test_lock_refresh_leaves_a_fresh_clone_unchanged(clone: Path) -> None:
    # Given a fresh clone whose lock files match pyproject.toml (CI checks that),
    command = block_starting("bash scripts/lock.sh")[0]
    # when the README's refresh command runs,
    ok(bash(command, clone, clean_env(), timeout_s=300), command)
    # then it rewrites the lock files to exactly what is committed.
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True
    )
    assert status.stdout == "", status.stdout


# --- production ----------------------------------------------------------------------
@pytest.fixture
def private_database() -> Iterator[str]:
    """A database of this test's own, as the production block's ``db`` host."""
    with postgres_database(f"tickwork_readme_{uuid.uuid4().hex[:8]}") as url:
        yield url


def test_production_commands(
    tmp_path: Path, private_database: str, amqp_url: str, queue_prefix: str
) -> None:
    block = block_starting("export TICKWORK_DATABASE_URL")
    exports = [line for line in block if line.startswith("export ")]
    oneshot = [line for line in block if line in ("tickwork migrate", "tickwork check")]
    servers = [line for line in block if line.startswith("tickwork ") and line not in oneshot]
    assert oneshot == ["tickwork migrate", "tickwork check"]
    assert servers == ["tickwork worker", "tickwork scheduler", "tickwork api"]
    # Given the README's exports, its example hosts replaced by this test's services,
    hosts = {
        "postgresql://tickwork@db/tickwork": private_database,
        "amqp://tickwork:secret@rabbitmq:5672/%2F": amqp_url,
    }
    preamble = "\n".join(exports)
    for example, real in hosts.items():
        assert example in preamble, f"the README's production example changed: {example}"
        preamble = preamble.replace(example, real)
    heartbeat_dir = tmp_path / "heartbeats"
    heartbeat_dir.mkdir()
    env = clean_env(
        TICKWORK_QUEUE_PREFIX=queue_prefix,
        TICKWORK_WORKER_THREADS="2",
        TICKWORK_API_PORT=str(free_port()),
    )
    # when migrate and check run after them, then both succeed (twice: migrate repeats safely),
    for line in [*oneshot, "tickwork migrate"]:
        ok(bash(f"{preamble}\n{line}", tmp_path, env, timeout_s=180), line)
    # and each long-running process starts, works, and stops on SIGTERM with exit 0.
    for line in servers:
        role = line.split()[1]
        port = free_port()
        role_env = {
            **env,
            "TICKWORK_METRICS_PORT": str(port),
            "TICKWORK_HEARTBEAT_FILE": str(heartbeat_dir / role),
        }
        log = tmp_path / f"{role}.log"
        proc = start(f"{preamble}\nexec {line}", tmp_path, role_env, log)
        try:
            if role == "api":
                url = f"http://127.0.0.1:{env['TICKWORK_API_PORT']}/openapi.json"
                wait_for(
                    lambda u=url: http_ok(u),
                    60,
                    "the admin API answers",
                    processes=[proc],
                    poll_s=POLL_S,
                )
            else:
                beat = heartbeat_dir / role
                wait_for(
                    beat.exists,
                    60,
                    f"`tickwork {role}` heartbeat",
                    processes=[proc],
                    poll_s=POLL_S,
                )
        finally:
            # To the main process, as Kubernetes (PID 1) and systemd's KillMode=mixed do: a
            # whole-group SIGTERM reaches Dramatiq's workers twice, and twice means "now".
            out = proc.stop(signal.SIGTERM)
        assert proc.returncode == 0, f"{line}: exit {proc.returncode}\n{out[-3000:]}"
        assert "Traceback" not in out, out[-3000:]


# --- Kubernetes ------------------------------------------------------------------------
def test_kubernetes_command_renders() -> None:
    # `kubectl apply` needs a cluster, which no test machine has; what it applies is the
    # overlay's rendering, so render it (tests/unit/test_k8s_manifests.py validates it).
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if IN_CI:
            pytest.fail("kubectl is not installed, and CI=true", pytrace=False)
        pytest.skip("kubectl is not installed")
    line = next(line for b in BLOCKS for line in commands(b) if line.startswith("kubectl "))
    overlay = line.split(" -k ", 1)[1]
    rendered = subprocess.run(
        [kubectl, "kustomize", overlay], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: Deployment" in rendered.stdout


# --- operating jobs --------------------------------------------------------------------
def test_operating_commands(tmp_path: Path) -> None:
    from tickwork.settings import load_settings
    from workers.heartbeat import age_s, heartbeat_path

    block = block_starting("tickwork jobs")
    # Given a fresh folder in embedded mode with `tickwork run` going (the README runs
    # these in a second terminal: run now and release hand their runs to it),
    env = clean_env(PYTHONPATH=str(REPO_ROOT))
    system = start(
        "exec tickwork run",
        tmp_path,
        {**env, "TICKWORK_API_PORT": str(free_port())},
        tmp_path / "run.log",
    )
    beat = heartbeat_path(load_settings({"TICKWORK_DATA_DIR": str(tmp_path / ".tickwork")}), "run")
    wait_for(lambda: age_s(beat) is not None, 60, "tickwork run started", processes=[system])
    try:
        _run_operating_block(block, tmp_path, env)
    finally:
        system.stop(signal.SIGINT, timeout_s=40)


def _run_operating_block(block: list[str], tmp_path: Path, env: dict[str, str]) -> None:
    for line in block:
        # when each command of the README's block runs as written,
        result = bash(line, tmp_path, env, timeout_s=120)
        # then it succeeds,
        out = ok(result, line)
        assert "Traceback" not in result.stderr, result.stderr
        # and the JSON it promises is JSON.
        if "--format json" in line:
            json.loads(out)
