"""The Grafana dashboard: loads, shows what operators need, valid PromQL, real metrics.

Names of Dramatiq's metrics are checked against a real worker in
tests/integration/test_metrics_exposed.py; tickwork's are checked here against what
the embedded system exposes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from producers.ticker import send_tick
from tests.promql import (
    DASHBOARD,
    MONITORING,
    dashboard,
    dashboard_exprs,
    metric_names,
    substitute_grafana_variables,
    used_metric_names,
)
from tests.support.systems import Embedded
from workers.metrics.exposition import render_metrics
from workers.scheduler import control


def test_the_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    board = dashboard()
    assert board["title"] == "tickwork" and board["uid"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in ("timeseries", "stat", "table"), panel["title"]
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = {panel["title"] for panel in dashboard()["panels"]}
    for wanted in (
        "Runs by status",
        "Run duration p95",
        "Records processed",
        "Age of last success per job",
        "Queue depth",
        "Dead letters per queue",
        "Tick lag",
    ):
        assert wanted in titles


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{job=~"$job"}[5m])))'
        " / on (job) group_left max(b_total offset 15m) > bool 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # Given each query as a recording rule (Grafana variables replaced by values),
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (test_alert_rules fails for it with CI=true)")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": substitute_grafana_variables(e)}
                    for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    # when promtool parses them, then every one is valid.
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_tickwork_metric_names_used_are_exposed_by_the_embedded_system(
    embedded: Embedded,
) -> None:
    # Given the embedded system after a tick, a job run and a dead letter kept, with the
    # jobs held (the held-since time exists only then),
    from workers.dead_letters import record_dead_letter

    send_tick(embedded.broker, embedded.runtime.settings)
    control.trigger(embedded.db, embedded.broker, "heartbeat")
    embedded.drain()
    record_dead_letter(
        embedded.db,
        queue_name="default",
        message_id="m1",
        actor_name="heartbeat",
        reason="test",
        message={},
    )
    control.hold(embedded.db)
    body, _ = render_metrics(embedded.runtime)
    exposed = {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    # then every tickwork metric the dashboard and the rules use is among them.
    used = {name for name in used_metric_names() if name.startswith("tickwork_")}
    assert used - exposed == set()


def test_kustomize_renders_the_rule_and_the_dashboard_config_map() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(result.stdout)}
    assert docs["PrometheusRule"]["spec"]["groups"]
    config_map = docs["ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"]["tickwork.json"] == DASHBOARD.read_text()
