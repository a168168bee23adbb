"""A real ``tickwork worker`` (two processes) and ``tickwork scheduler`` on RabbitMQ +
PostgreSQL expose every metric the issue lists, and every metric name the alert rules
and the Grafana dashboard use (given / when / then)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    FAST_RETRIES,
    free_port,
    run_tickwork,
    service_unavailable,
    services_env,
)
from tests.promql import (
    RULES_FILE,
    dashboard_exprs,
    substitute_grafana_variables,
    used_metric_names,
)
from tests.support.processes import ProcessStarter
from tests.support.throwaway_jobs import ThrowawayJobs
from tests.support.waiting import wait_for
from tickwork.settings import load_settings
from workers.app import build_runtime

THROWAWAY_JOBS_MODULE = "tests.support.throwaway_jobs_module"

LISTED = {
    # Dramatiq's own (multiprocess)
    "dramatiq_messages_total",
    "dramatiq_message_errors_total",
    "dramatiq_message_retries_total",
    "dramatiq_message_rejects_total",
    "dramatiq_messages_inprogress",
    "dramatiq_message_duration_milliseconds_bucket",
    # per job
    "tickwork_job_runs_total",
    "tickwork_job_duration_seconds_bucket",
    "tickwork_job_records_processed_total",
    "tickwork_job_last_run_timestamp_seconds",
    "tickwork_job_last_success_timestamp_seconds",
    "tickwork_job_last_alive_timestamp_seconds",
    "tickwork_job_first_run_timestamp_seconds",
    "tickwork_job_expected_interval_seconds",
    "tickwork_job_skipped_runs_total",
    # scheduler
    "tickwork_scheduler_last_tick_timestamp_seconds",
    "tickwork_scheduler_tick_lag_seconds",
    "tickwork_scheduler_held",
    # queues
    "tickwork_queue_messages",
    "tickwork_queue_delayed_messages",
    "tickwork_queue_dead_letters",
}


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}}; empty while the port is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(metrics: dict[str, Any], name: str, **labels: str) -> float:
    return float(metrics.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


def query_with_prometheus(tmp_path: Path, ports: list[int]) -> tuple[dict[str, str], list[str]]:
    """Run Debian's Prometheus against the targets with the alert rules loaded; return
    each rule's health and the dashboard queries that returned nothing."""
    binary = shutil.which("prometheus")
    assert binary is not None  # checked at the start of the test
    web_port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": "tickwork",
                "honor_labels": True,  # keep tickwork's own `job` label (docs/OBSERVABILITY.md)
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def api(path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{web_port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())["data"]

    def scraped_twice() -> bool:
        try:
            result = api("query", query="count_over_time(up[1m])")["result"]
        except OSError:
            return False
        return len(result) == len(ports) and all(float(r["value"][1]) >= 3 for r in result)

    try:
        wait_for(scraped_twice, 60, "Prometheus scraping the targets", processes=[server])
        time.sleep(2)  # let the rules evaluate on the scraped data
        rules = api("rules")["groups"]
        health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
        empty = [
            expr
            for expr in dashboard_exprs()
            if not api("query", query=substitute_grafana_variables(expr))["result"]
        ]
    finally:
        server.terminate()
        server.communicate(timeout=30)
    return health, empty


def test_worker_and_scheduler_expose_every_metric_used(
    tmp_path: Path,
    pg_db: Any,
    amqp_url: str,
    queue_prefix: str,
    tj: ThrowawayJobs,
    start_process: ProcessStarter,
) -> None:
    env = services_env(
        pg_db,  # emptied: what earlier tests left in the session's database is gone
        amqp_url,
        queue_prefix,
        **FAST_RETRIES,
        TICKWORK_WORKER_PROCESSES="2",
        TICKWORK_WORKER_THREADS="2",
        TICKWORK_MAX_RETRIES="1",
        TICKWORK_METRICS_HOST="127.0.0.1",
        TICKWORK_METRICS_DIR=str(tmp_path / "prom"),
        TICKWORK_JOB_MODULES=THROWAWAY_JOBS_MODULE,  # t_fail: a job that fails
    )
    if shutil.which("prometheus") is None:  # Debian's prometheus package, like promtool
        service_unavailable("the prometheus binary (apt-get install prometheus)")
    assert run_tickwork("migrate", cwd=tmp_path, **env).returncode == 0
    worker_port, scheduler_port = free_port(), free_port()
    # Given a worker tree and a scheduler, each with its own metrics port,
    worker = start_process("worker", {**env, "TICKWORK_METRICS_PORT": str(worker_port)})
    scheduler = start_process("scheduler", {**env, "TICKWORK_METRICS_PORT": str(scheduler_port)})
    procs = [worker, scheduler]
    # (this process sends t_fail: tj declares it here, the module above in the worker)
    runtime = build_runtime(load_settings(env))
    try:
        wait_for(lambda: bool(scrape(worker_port)), 60, "worker metrics port", processes=procs)
        # when a run is triggered, a failing job is retried then fails (dead-lettered), and a
        # malformed heartbeat message (an argument it does not take) is refused as poison,
        assert run_tickwork("jobs", "trigger", "heartbeat", cwd=tmp_path, **env).returncode == 0
        runtime.broker.get_actor("t_fail").send()
        runtime.broker.get_actor("heartbeat").send(bogus_argument=1)

        def worker_saw_everything() -> bool:
            m = scrape(worker_port)
            return (
                value(m, "tickwork_job_runs_total", job="heartbeat", status="succeeded") >= 1
                and value(m, "tickwork_job_runs_total", job="t_fail", status="failed") >= 1
                and "dramatiq_message_retries_total" in m
                and "dramatiq_message_rejects_total" in m
                and value(m, "tickwork_queue_dead_letters", queue="default") >= 1
                and "tickwork_scheduler_tick_lag_seconds" in m
                and "tickwork_scheduler_last_tick_timestamp_seconds" in m
            )

        def scheduler_published_a_tick() -> bool:
            published = value(scrape(scheduler_port), "tickwork_scheduler_ticks_published_total")
            return published >= 1

        # (and a minute boundary passes, so periodiq publishes a tick the worker dispatches:
        # the worker's tick gauges exist before any tick, so wait for the scheduler's count),
        wait_for(worker_saw_everything, 150, "job, dead-letter and tick metrics", processes=procs)
        wait_for(scheduler_published_a_tick, 75, "a tick published", processes=procs)
        # (jobs held: the held-since time the held-too-long alert uses exists only then),
        assert run_tickwork("hold", cwd=tmp_path, **env).returncode == 0
        worker_metrics = scrape(worker_port)
        scheduler_metrics = scrape(scheduler_port)
        prometheus_results = query_with_prometheus(tmp_path, [worker_port, scheduler_port])
        worker_dirs = list((tmp_path / "prom").iterdir())
    finally:
        runtime.broker.close()
        outputs = [proc.stop(signal.SIGTERM) for proc in procs]
    # then the worker exposes every listed metric, merged from its two processes,
    assert LISTED - set(worker_metrics) == set()
    assert value(worker_metrics, "tickwork_job_expected_interval_seconds", job="heartbeat") == 60
    assert value(worker_metrics, "tickwork_metrics_collector_up", collector="queues") == 1
    # the scheduler counts the ticks it published and serves the shared collectors,
    assert value(scheduler_metrics, "tickwork_scheduler_ticks_published_total") >= 1
    assert "tickwork_scheduler_held" in scheduler_metrics
    assert value(worker_metrics, "tickwork_scheduler_held") == 1
    assert "tickwork_queue_messages" in scheduler_metrics
    # every metric the dashboard and the alert rules use is really exposed,
    exposed = set(worker_metrics) | set(scheduler_metrics)
    assert used_metric_names() - exposed == set()
    # a real Prometheus scraping both loads every rule without evaluation errors, and
    # every dashboard query returns data,
    rule_health, empty_queries = prometheus_results
    assert rule_health and all(h == "ok" for h in rule_health.values()), rule_health
    assert empty_queries == [], empty_queries
    # the worker tree wrote its files under its own directory (removed on a clean
    # stop), and both exit cleanly.
    assert len(worker_dirs) == 1 and worker_dirs[0].name.startswith("worker-")
    assert list((tmp_path / "prom").iterdir()) == []
    assert worker.returncode == 0, outputs[0][-3000:]
    assert "Traceback" not in outputs[1], outputs[1][-3000:]


def test_queue_depths_come_from_rabbitmq_passive_declares(amqp_url: str, queue_prefix: str) -> None:
    import pika

    from workers.metrics.queue_metrics import QueueDepthCollector

    settings = load_settings(
        {"TICKWORK_BROKER_URL": amqp_url, "TICKWORK_QUEUE_PREFIX": queue_prefix}
    )
    collector = QueueDepthCollector(settings)
    # Given no queue of this prefix exists yet, then nothing is reported (and nothing
    # is created: a passive declare of a missing queue is a 404, not a declaration),
    assert collector.depths() == []
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    assert_missing = connection.channel()
    try:
        assert_missing.queue_declare(f"{queue_prefix}default", passive=True)
        raise AssertionError("the collector created a queue")
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404
    # when the default queue holds 2 ready messages, its delay queue 1 and its
    # dead-letter queue 3 (declared as Dramatiq does),
    for suffix, count in (("", 2), (".DQ", 1), (".XQ", 3)):
        name = f"{queue_prefix}default{suffix}"
        channel.queue_declare(name, durable=True)
        for _ in range(count):
            channel.basic_publish("", name, b"{}")
    connection.close()
    # then the collector reports each, under the logical name.
    (depth,) = collector.depths()
    assert (depth.queue, depth.ready, depth.delayed, depth.dead) == ("default", 2, 1, 3)
    assert depth.consumers == 0
