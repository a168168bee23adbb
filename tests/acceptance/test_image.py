"""The container image, built and run for real (opt-in: ``pytest --image``).

Builds deploy/Dockerfile with buildah (deploy/image/build.sh: no Docker daemon; the base is
a local Debian bookworm made with debootstrap, reused once built) and runs it with podman
(runc, vfs storage) as its non-root user, root filesystem read-only, host network, against
this machine's PostgreSQL (a fresh database) and RabbitMQ (a queue prefix of its own).
Needs root and Debian's buildah, podman, runc and debootstrap.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import FERNET_KEY, REPO_ROOT, port_open, postgres_database
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.image, pytest.mark.timeout(1200)]

TOOLS = {"buildah": "buildah", "podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}
CONTAINERS_CONF = REPO_ROOT / "deploy" / "image" / "containers.conf"
UID = "10001"


def listen_port() -> int:
    """A free port below the ephemeral range: on the host network, a port the kernel hands
    out (conftest's free_port) can be taken by any outgoing connection before a container
    listens on it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10000, max(low, 10001))
        if not port_open("127.0.0.1", port):
            return port


@dataclass
class Image:
    name: str
    base: str
    size_bytes: int
    build_s: float


def podman(
    *args: str, timeout: float = 180, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(
        ["podman", "--storage-driver", "vfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def run_args(image: str, env: dict[str, str], *, name: str | None = None) -> list[str]:
    """`podman run` options as in deploy/k8s: non-root, read-only root, writable tmpfs at
    /tmp and /var/run/tickwork only; host network to reach the host's services."""
    args = [
        "--user",
        f"{UID}:{UID}",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,mode=1777",
        "--tmpfs",
        "/var/run/tickwork:rw,mode=1777",
        "--network",
        "host",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    if name:
        args += ["--name", name]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    return [*args, image]


@pytest.fixture(scope="module")
def image() -> Image:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"--image needs: apt-get install {' '.join(missing)}", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("--image needs root (buildah vfs storage, podman)", pytrace=False)
    started = time.monotonic()
    built = subprocess.run(
        ["bash", "deploy/image/build.sh"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert built.returncode == 0, built.stdout + built.stderr[-5000:]
    fields = dict(part.split("=", 1) for part in built.stdout.strip().splitlines()[-1].split())
    result = Image(
        name=fields["image"],
        base=fields["base"],
        size_bytes=int(fields["size_bytes"]),
        build_s=float(fields["build_s"]),
    )
    total_s = time.monotonic() - started
    print(
        f"\nimage {result.name}: {result.size_bytes / 1e6:.0f} MB, built in {result.build_s:.0f} s "
        f"({total_s:.0f} s with the base image step), base {result.base}"
    )
    return result


@pytest.fixture(scope="module")
def image_db() -> Iterator[str]:
    with postgres_database(f"tickwork_image_{uuid.uuid4().hex[:8]}") as url:
        yield url


def test_image_metadata_user_and_contents(image: Image) -> None:
    labels = podman("image", "inspect", "--format", "{{json .Labels}}", image.name).stdout
    for key in ("source", "version", "licenses", "title"):
        assert f'"org.opencontainers.image.{key}"' in labels, labels
    assert '"org.opencontainers.image.licenses":"MIT"' in labels, labels
    config = podman(
        "image", "inspect", "--format", "{{.Config.User}} {{json .Config.Entrypoint}}", image.name
    ).stdout.split()
    assert config == [f"{UID}:{UID}", '["tickwork"]'], config

    # No compiler, and no wheel but what the base's own Python ships (ensurepip's pip and
    # setuptools wheels, /usr/share/python-wheels on Debian): none left by our build.
    find_wheels = "find / -xdev -name '*.whl' 2>/dev/null | sort"
    listing = (
        "for c in gcc cc c++ g++ clang make; do command -v $c && echo COMPILER $c; done; "
        f"{find_wheels}; ls -A /opt/tickwork; ls /root/.cache 2>/dev/null; true"
    )
    out = podman(
        "run",
        "--rm",
        *run_args(image.name, {})[:-1],
        "--entrypoint",
        "sh",
        image.name,
        "-c",
        listing,
    ).stdout
    base_wheels = podman(
        "run", "--rm", "--network", "host", "--entrypoint", "sh", image.base, "-c", find_wheels
    ).stdout.split()
    assert "COMPILER" not in out, out
    wheels = [line for line in out.split() if line.endswith(".whl")]
    ours = [w for w in wheels if w not in base_wheels]
    assert not ours, f"wheels left by the build: {ours}"
    print(f"\nwheels in the image, all from its base's Python: {wheels}")
    # The virtualenv holds tickwork and its locked dependencies, and nothing installs them.
    assert (
        "pip"
        not in podman(
            "run", "--rm", "--entrypoint", "ls", image.name, "/opt/tickwork/bin"
        ).stdout.split()
    )


def test_check_and_migrate_in_the_container(image: Image, image_db: str, amqp_url: str) -> None:
    env = {
        "TICKWORK_DATABASE_URL": image_db,
        "TICKWORK_BROKER_URL": amqp_url,
        "TICKWORK_FERNET_KEY": FERNET_KEY,
    }
    # Before migrating, `tickwork check` fails: the database is not at head.
    before = podman("run", "--rm", *run_args(image.name, env), "check", check=False)
    assert before.returncode == 1, before.stdout + before.stderr
    migrated = podman("run", "--rm", *run_args(image.name, env), "migrate", check=False)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    checked = podman("run", "--rm", *run_args(image.name, env), "check", check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rows = [" ".join(line.split()) for line in checked.stdout.splitlines()]
    assert any(row.startswith("ok database reachable, at head") for row in rows), rows
    assert "ok broker RabbitMQ reachable" in rows, rows
    # and as its own user, on a root filesystem it cannot write to.
    probe = podman(
        "run",
        "--rm",
        *run_args(image.name, env)[:-1],
        "--entrypoint",
        "sh",
        image.name,
        "-c",
        "id -u; touch /opt/tickwork/x 2>&1; touch /x 2>&1; touch /tmp/x && echo tmp-ok",
        check=False,
    ).stdout
    assert probe.splitlines()[0] == UID, probe
    assert probe.count("Read-only file system") == 2 and "tmp-ok" in probe, probe


def test_worker_scheduler_and_api_containers(
    image: Image, image_db: str, amqp_url: str, queue_prefix: str
) -> None:
    api_port = listen_port()
    env = {
        "TICKWORK_DATABASE_URL": image_db,
        "TICKWORK_BROKER_URL": amqp_url,
        "TICKWORK_QUEUE_PREFIX": queue_prefix,
        "TICKWORK_FERNET_KEY": FERNET_KEY,
        "TICKWORK_WORKER_PROCESSES": "1",
        "TICKWORK_WORKER_THREADS": "2",
        "TICKWORK_METRICS_DIR": "/var/run/tickwork/metrics",
        "TICKWORK_HEARTBEAT_FILE": "/var/run/tickwork/heartbeat",
        "TICKWORK_API_HOST": "127.0.0.1",
        "TICKWORK_API_PORT": str(api_port),
    }
    migrated = podman("run", "--rm", *run_args(image.name, env), "migrate", check=False)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    suffix = uuid.uuid4().hex[:6]
    names = {role: f"tickwork-test-{role}-{suffix}" for role in ("worker", "scheduler", "api")}
    ports = {"worker": listen_port(), "scheduler": listen_port()}
    engine = create_engine(image_db.replace("postgresql://", "postgresql+psycopg://"))

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

    def api_healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        for role, name in names.items():
            role_env = dict(env)
            if role in ports:
                role_env["TICKWORK_METRICS_PORT"] = str(ports[role])
            podman("run", "--detach", *run_args(image.name, role_env, name=name), role)
        wait_for(heartbeat_done, 120, "heartbeat run by the worker container", poll_s=1)
        wait_for(api_healthy, 60, "the api container's /health", poll_s=0.5)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT worker, trigger FROM job_runs WHERE job_name='heartbeat'")
            ).first()
        assert row is not None and row.trigger == "schedule" and row.worker, row
        for role, port in ports.items():  # each serves its metrics on its port
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert metrics.status_code == 200 and "tickwork_" in metrics.text, role
        # The worker's liveness probe, as Kubernetes runs it (exec in the container).
        live = podman(
            "exec",
            names["worker"],
            "tickwork",
            "probe",
            "liveness",
            "--role",
            "worker",
            "--max-age-s",
            "60",
            check=False,
        )
        assert live.returncode == 0, live.stdout + live.stderr
        # SIGTERM (podman stop) ends each cleanly.
        for role in ("scheduler", "worker", "api"):
            podman("stop", "--time", "40", names[role], timeout=120)
            state = podman("inspect", "--format", "{{.State.ExitCode}}", names[role]).stdout
            logged = podman("logs", names[role])
            logs = logged.stdout + logged.stderr
            assert state.strip() == "0", f"{role} exit {state}: {logs[-3000:]}"
            assert "Traceback" not in logs, logs[-3000:]
        print(f"\nworker, scheduler and api containers ran on {image.name}: heartbeat succeeded")
    finally:
        engine.dispose()
        for name in names.values():  # shown by pytest when the test failed
            logged = podman("logs", name, check=False)
            print(f"--- {name}\n{(logged.stdout + logged.stderr)[-3000:]}")
        for name in names.values():
            podman("rm", "--force", "--time", "5", name, check=False, timeout=120)
