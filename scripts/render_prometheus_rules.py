"""Write deploy/k8s/monitoring/rules/tickwork.rules.yaml from the PrometheusRule.

The PrometheusRule is the source; the plain rules file (for Prometheus without the
operator, and for ``promtool test rules``) is its ``spec``. Run after editing the rules:

    python scripts/render_prometheus_rules.py          # write
    python scripts/render_prometheus_rules.py --check  # exit 1 if out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "monitoring"
SOURCE = MONITORING / "prometheusrule.yaml"
TARGET = MONITORING / "rules" / "tickwork.rules.yaml"
HEADER = (
    "# GENERATED from ../prometheusrule.yaml by scripts/render_prometheus_rules.py.\n"
    "# Do not edit: edit the PrometheusRule and re-run the script.\n"
)


class _Literal(str):
    """Multi-line strings (PromQL) are written as YAML block literals."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


def _blocks(node: object) -> object:
    if isinstance(node, dict):
        return {k: _blocks(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_blocks(v) for v in node]
    if isinstance(node, str) and "\n" in node:
        return _Literal(node)
    return node


def render() -> str:
    rule = yaml.safe_load(SOURCE.read_text())
    if rule.get("kind") != "PrometheusRule" or "groups" not in rule.get("spec", {}):
        raise SystemExit(f"{SOURCE}: not a PrometheusRule with spec.groups")
    dumper = yaml.SafeDumper
    dumper.add_representer(_Literal, _literal)
    body = yaml.dump(
        _blocks({"groups": rule["spec"]["groups"]}),
        Dumper=dumper,
        sort_keys=False,
        width=1000,
        allow_unicode=True,
    )
    return HEADER + body


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python scripts/render_prometheus_rules.py")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
