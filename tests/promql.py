"""PromQL expressions of the alert rules and the Grafana dashboard, and the metric
names they use (so tests can check each name against what processes really expose)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
RULES_FILE = MONITORING / "rules" / "tickwork.rules.yaml"

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}
# Grafana's variables, replaced by values Prometheus accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$job": ".*"}


def substitute_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names (as exposed: ``x_bucket`` for histograms) used by a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery selectors
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text
    )  # grouping label lists
    names = set()
    for match in re.finditer(r"(?<![\w.:$])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group()
        if word.lower() in _KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function call
        names.add(word)
    return names


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]["groups"]
    return groups


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in rule_groups() for rule in group["rules"]]


def used_metric_names() -> set[str]:
    """Every metric name the dashboard (and its variables) and the rules use."""
    names: set[str] = set()
    for expr in dashboard_exprs() + rule_exprs():
        names |= metric_names(substitute_grafana_variables(expr))
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query", "")
        if isinstance(query, dict):  # a Prometheus query variable: {"query": ..., "refId": ...}
            query = query.get("query", "")
        found = re.match(r"label_values\((\w+)", query)
        if found:
            names.add(found.group(1))
    return names
