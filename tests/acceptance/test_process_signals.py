"""Real tickwork processes as Unix citizens: SIGTERM/SIGINT stop them cleanly (exit 0, one
"stopped" line, no traceback, no ERROR), every process logs in one format (text or JSON
lines), a worker and a scheduler on one data dir share neither heartbeat file nor metrics
port, and a second `tickwork run` whose API port is taken says the page is not served."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, run_tickwork, services_env
from tests.support.processes import ProcessStarter


def assert_clean(out: str) -> None:
    assert "Traceback" not in out, out
    assert " ERROR " not in out, out
    assert " CRITICAL " not in out, out


def json_lines(out: str) -> list[dict[str, Any]]:
    """Every line of ``out`` as a JSON object (fails on the first line that is not)."""
    records = []
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{out}") from None
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message", "role", "pid"} <= set(record), line
        assert record["time"].endswith("Z"), line  # ISO 8601, UTC
        records.append(record)
    return records


@pytest.fixture
def env(tmp_path: Path, pg_db: Any, amqp_url: str, queue_prefix: str) -> dict[str, str]:
    """Settings of one test's processes: its own queues, data dir, heartbeat file."""
    return services_env(
        pg_db,
        amqp_url,
        queue_prefix,
        TICKWORK_DATA_DIR=str(tmp_path / "data"),
        TICKWORK_HEARTBEAT_FILE=str(tmp_path / "heartbeat"),
        TICKWORK_METRICS_PORT="0",
        TICKWORK_WORKER_PROCESSES="1",
        TICKWORK_WORKER_THREADS="2",
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_scheduler_stops_on_a_signal_with_exit_0_and_one_line(
    start_process: ProcessStarter, env: dict[str, str], sig: int
) -> None:
    # Given a running scheduler,
    scheduler = start_process("scheduler", env)
    scheduler.wait_for_line("periodiq scheduler started")
    # when it gets SIGTERM (or Ctrl-C),
    out = scheduler.stop(sig)
    # then it exits 0 and says once that it stopped, without a traceback or an error.
    assert scheduler.returncode == 0, out
    assert out.count("scheduler stopped") == 1, out
    assert f"scheduler stopped ({signal.Signals(sig).name})" in out
    assert_clean(out)


def test_worker_stops_on_sigterm_without_tracebacks_in_json(
    start_process: ProcessStarter, env: dict[str, str]
) -> None:
    # Given a worker logging JSON whose idle broker connections RabbitMQ has dropped
    # (heartbeat 2 s: a publishing connection unused for 4 s is closed by the broker, as
    # one unused for a minute is with the default heartbeat),
    env = {
        **env,
        "TICKWORK_BROKER_URL": env["TICKWORK_BROKER_URL"] + "?heartbeat=2",
        "TICKWORK_LOG_FORMAT": "json",
    }
    worker = start_process("worker", env)
    worker.wait_for_line("Worker process is ready for action")
    time.sleep(6)
    # when it gets SIGTERM,
    out = worker.stop()
    # then it exits 0, each process says it stopped, once, and nothing is an error;
    assert worker.returncode == 0, out
    assert "Traceback" not in out, out
    records = json_lines(out)
    assert [r for r in records if r["level"] in ("ERROR", "CRITICAL") or "exc_info" in r] == []
    messages = [r["message"] for r in records]
    assert messages.count("tickwork worker stopped") == 1, out
    assert messages.count("worker process stopped") == 1, out
    # and the Dramatiq processes (main, worker, forked) all log as role "worker".
    assert {r["role"] for r in records} == {"worker"}
    assert len({r["pid"] for r in records}) >= 2
    assert any(r["logger"].startswith("dramatiq.") for r in records)


def test_api_and_uvicorn_log_json_lines_and_stop_on_sigterm(
    start_process: ProcessStarter, env: dict[str, str]
) -> None:
    # Given `tickwork api` logging JSON, asked for a page,
    port = free_port()
    api = start_process(
        "api", {**env, "TICKWORK_API_PORT": str(port), "TICKWORK_LOG_FORMAT": "json"}
    )
    api.wait_for_line("Application startup complete")
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    # when it gets SIGTERM,
    out = api.stop()
    # then it exits 0, and every line -- uvicorn's access and server lines too -- is JSON.
    assert api.returncode == 0, out
    records = json_lines(out)
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "uvicorn.access", "tickwork.cli"} <= loggers, loggers
    assert [r["message"] for r in records].count("api stopped") == 1
    assert {r["role"] for r in records} == {"api"}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_worker_and_scheduler_on_one_data_dir_share_no_heartbeat_file_or_metrics_port(
    tmp_path: Path, start_process: ProcessStarter, env: dict[str, str]
) -> None:
    from tickwork.settings import load_settings
    from workers.heartbeat import heartbeat_path

    if not (_port_free(9191) and _port_free(9192)):
        pytest.skip("the default metrics ports 9191/9192 are taken on this host")
    # Given a worker and a scheduler on one data dir, heartbeat file and metrics port unset,
    env = {k: v for k, v in env.items() if k not in ("TICKWORK_HEARTBEAT_FILE",)}
    env.pop("TICKWORK_METRICS_PORT")
    env["TICKWORK_HEARTBEAT_INTERVAL_S"] = "0.5"
    settings = load_settings(env)
    files = {role: heartbeat_path(settings, role) for role in ("worker", "scheduler")}
    try:
        worker = start_process("worker", env)
        scheduler = start_process("scheduler", env)
        # when both run,
        worker.wait_for_line("metrics served on http://0.0.0.0:9191/metrics")
        scheduler.wait_for_line("metrics served on http://0.0.0.0:9192/metrics")
        worker.wait_for_line(f"liveness heartbeat: {files['worker']}")
        scheduler.wait_for_line(f"liveness heartbeat: {files['scheduler']}")
        # then each has its own heartbeat file (the probe asks for the role) and port;
        assert files["worker"] != files["scheduler"]
        for role in ("worker", "scheduler"):
            live = run_tickwork("probe", "liveness", "--role", role, cwd=tmp_path, **env)
            assert live.returncode == 0, live.stderr
        unsure = run_tickwork("probe", "liveness", cwd=tmp_path, **env)
        assert unsure.returncode == 2 and "--role" in unsure.stderr
        for url in ("http://127.0.0.1:9191/metrics", "http://127.0.0.1:9192/metrics"):
            assert httpx.get(url, timeout=10).status_code == 200
        # and both stop cleanly.
        outs = [scheduler.stop(), worker.stop()]
        assert scheduler.returncode == 0 and worker.returncode == 0, outs
        for out in outs:
            assert_clean(out)
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)


def test_a_second_run_whose_api_port_is_taken_says_the_page_is_not_served(
    tmp_path: Path, start_process: ProcessStarter
) -> None:
    port = free_port()
    env = {"TICKWORK_API_PORT": str(port), "TICKWORK_HEARTBEAT_FILE": str(tmp_path / "beat")}
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    # Given a `tickwork run` serving the admin page,
    first = start_process("run", env, cwd=tmp_path / "first")
    first.wait_for_line(f"admin page http://127.0.0.1:{port}/", timeout_s=60)
    # when a second one starts in another folder with the same API port,
    second = start_process("run", env, cwd=tmp_path / "second")
    second.wait_for_line("Ctrl-C stops", timeout_s=60)
    # then it says the port is taken and the page is not served, never the page's URL;
    second_out = second.stop(signal.SIGINT)
    assert "admin page NOT served" in second_out and "TICKWORK_API_PORT" in second_out
    assert "Address already in use" in second_out
    assert f"http://127.0.0.1:{port}/" not in second_out
    assert second.returncode == 0, second_out
    # and the first keeps serving it, and stops cleanly.
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    first_out = first.stop(signal.SIGINT)
    assert first.returncode == 0, first_out
    assert_clean(first_out)


def test_a_publish_after_the_broker_dropped_an_idle_connection_logs_no_error(
    tmp_path: Path, amqp_url: str, queue_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import threading

    import pika

    from tests.conftest import make_settings
    from tickwork.rabbitmq import expected_disconnects
    from workers.app import build_runtime

    # Given a producer whose publishing connection sat idle until RabbitMQ dropped it
    # (heartbeat 1 s: gone after about 2 s; with the default, after a quiet minute),
    settings = make_settings(
        tmp_path, TICKWORK_BROKER_URL=amqp_url + "?heartbeat=1", TICKWORK_QUEUE_PREFIX=queue_prefix
    )
    runtime = build_runtime(settings)
    tick = runtime.broker.get_actor("tick")
    caplog.set_level(logging.WARNING)
    tick.send_with_options(scheduled_at="2026-01-01T00:00:00+00:00")
    time.sleep(4)
    # when it publishes again and then closes,
    tick.send_with_options(scheduled_at="2026-01-01T00:01:00+00:00")
    runtime.broker.close()
    # then both messages are queued and the broker logged no warning or error;
    broker_names = ("pika", "dramatiq", "workers.broker")
    assert [r for r in caplog.records if r.name.startswith(broker_names)] == []
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    queue = connection.channel().queue_declare(settings.queue("scheduler"), passive=True)
    connection.close()
    assert queue.method.message_count == 2
    # but pika's errors elsewhere -- another thread, or after the discard -- still log.
    inside = threading.Event()
    done = threading.Event()

    def discarding() -> None:
        with expected_disconnects():
            logging.getLogger("pika.adapters.blocking_connection").error("expected, dropped")
            inside.set()
            done.wait(5)

    thread = threading.Thread(target=discarding)
    thread.start()
    inside.wait(5)
    logging.getLogger("pika.adapters.blocking_connection").error("in use, kept")
    done.set()
    thread.join(5)
    logging.getLogger("pika.adapters.blocking_connection").error("after, kept")
    pika_records = [r.getMessage() for r in caplog.records if r.name.startswith("pika")]
    assert pika_records == ["in use, kept", "after, kept"]
