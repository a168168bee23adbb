"""The exposition every process serves (given / when / then)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from schema.engine import Database
from tests.conftest import make_settings
from tests.support.systems import Embedded
from workers.metrics.exposition import build_registry, render_metrics, start_metrics_server


def names(body: bytes) -> set[str]:
    return {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def test_render_metrics_serves_process_metrics_and_collectors(embedded: Embedded) -> None:
    # Given the embedded system after a tick,
    from producers.ticker import send_tick

    send_tick(embedded.broker, embedded.runtime.settings)
    embedded.drain()
    # when the API-style render is called,
    body, content_type = render_metrics(embedded.runtime)
    # then it is Prometheus text with job, scheduler and queue metrics and healthy collectors.
    assert content_type.startswith("text/plain; version=")
    got = names(body)
    for name in (
        "tickwork_job_runs_total",
        "tickwork_job_expected_interval_seconds",
        "tickwork_scheduler_tick_lag_seconds",
        "tickwork_scheduler_last_tick_timestamp_seconds",
        "tickwork_scheduler_held",
        "tickwork_queue_messages",
        "tickwork_queue_dead_letters",
    ):
        assert name in got, name
    assert 'tickwork_metrics_collector_up{collector="scheduler_state"} 1.0' in body.decode()


def test_a_broken_database_drops_its_collectors_but_not_the_scrape(tmp_path: Path) -> None:
    # Given a database URL pointing at a directory that does not exist,
    settings = make_settings(
        tmp_path, TICKWORK_DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/x.sqlite3"
    )
    registry = build_registry(settings, Database(settings), broker=None)
    # when scraped,
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    # then the scrape still succeeds, and says which collector is down.
    assert 'tickwork_metrics_collector_up{collector="scheduler_state"} 0.0' in text
    assert 'tickwork_metrics_collector_up{collector="expected_intervals"} 0.0' in text


def test_the_metrics_server_answers_on_its_port(embedded: Embedded, tmp_path: Path) -> None:
    # Given a metrics server on a free port,
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_settings(
        tmp_path, TICKWORK_METRICS_PORT=str(port), TICKWORK_METRICS_HOST="127.0.0.1"
    )
    start_metrics_server(settings, build_registry(settings, embedded.db, embedded.broker))
    # when scraped over HTTP, then it serves the exposition.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read()
    assert "tickwork_scheduler_held" in names(body)
