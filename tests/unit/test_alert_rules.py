"""The alert rules: valid, generated consistently, and unit-tested with promtool.

promtool comes from Debian's ``prometheus`` package (.ci/apt-packages.txt). Missing
promtool skips locally and fails with CI=true.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import IN_CI, REPO_ROOT
from tests.promql import MONITORING, RULES_FILE, rule_groups

TESTS_DIR = MONITORING / "tests"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found (apt-get install prometheus)"
        if IN_CI:
            pytest.fail(f"{message}, and CI=true: the alert rules must be tested", pytrace=False)
        pytest.skip(message)
    return path


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_names() -> set[str]:
    return {rule["alert"] for group in rule_groups() for rule in group["rules"] if "alert" in rule}


def test_the_rules_file_is_the_prometheusrule_spec() -> None:
    # Given the PrometheusRule (the source), when the plain rules file is rendered,
    result = run(sys.executable, "scripts/render_prometheus_rules.py", "--check")
    # then the committed file is up to date,
    assert result.returncode == 0, result.stdout + result.stderr
    # and holds exactly the PrometheusRule's groups.
    assert yaml.safe_load(RULES_FILE.read_text())["groups"] == rule_groups()


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in rule_groups())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    # Given every test file, when promtool runs them, then all pass.
    files = sorted(str(p) for p in TESTS_DIR.glob("*.yaml"))
    assert files
    result = run(promtool, "test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_every_alert_has_a_firing_and_a_not_firing_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS_DIR.glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alert_names() - firing == set(), "alerts without a firing test"
    assert alert_names() - quiet == set(), "alerts without a not-firing test"
    assert {
        "TickworkJobNotSucceeding",
        "TickworkJobNeverSucceeded",
        "TickworkSchedulerHeldTooLong",
        "TickworkJobFailingRepeatedly",
        "TickworkNoTick",
        "TickworkDeadLettersGrowing",
        "TickworkQueueBacklogGrowing",
    } <= alert_names()


def test_promtool_tests_catch_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    # Given a copy of the rules where "no tick for 3 minutes" became 30 minutes,
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy)
    rules = copy / "rules" / "tickwork.rules.yaml"
    text = rules.read_text()
    assert "> 180" in text
    rules.write_text(text.replace("> 180", "> 1800"))
    # when the promtool tests run against it, then they fail on that alert.
    result = run(promtool, "test", "rules", str(copy / "tests" / "scheduler.test.yaml"))
    assert result.returncode != 0
    assert "TickworkNoTick" in result.stdout + result.stderr


# The dead-man's-switch faults issue 20 found, each put back into a copy of the rules:
# (what is replaced, by what, the test file that must then fail, the alert it names).
REGRESSIONS = {
    "a precheck skip is no sign of life again": (
        "max by (job) (tickwork_job_last_alive_timestamp_seconds))\n",
        "max by (job) (tickwork_job_last_success_timestamp_seconds))\n",
        "jobs.test.yaml",
        "an hourly job whose precheck skips",
    ),
    "holding the jobs no longer silences them": (
        "  unless on () (max(tickwork_scheduler_held) > 0)\n",
        "\n",
        "jobs.test.yaml",
        "holding the jobs silences",
    ),
    "a job that never succeeded is not told apart": (
        "unless on (job) max by (job) (tickwork_job_last_alive_timestamp_seconds)",
        "unless on (job) max by (job) (tickwork_job_first_run_timestamp_seconds)",
        "jobs.test.yaml",
        "never succeeded since its first run",
    ),
    "a hold is never too long": ("> 3600)", "> 360000)", "scheduler.test.yaml", "held"),
}


@pytest.mark.parametrize("fault", sorted(REGRESSIONS))
def test_promtool_tests_catch_the_dead_mans_switch_faults(
    promtool: str, tmp_path: Path, fault: str
) -> None:
    old, new, test_file, case = REGRESSIONS[fault]
    # Given a copy of the rules with one of the faults put back,
    copy = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy)
    rules = copy / "rules" / "tickwork.rules.yaml"
    text = rules.read_text()
    assert old in text, fault
    rules.write_text(text.replace(old, new))
    # when the promtool tests run against it, then they fail, in the case written for it.
    result = run(promtool, "test", "rules", str(copy / "tests" / test_file))
    assert result.returncode != 0, fault
    assert case in result.stdout + result.stderr, result.stdout


def test_every_rule_says_what_to_do() -> None:
    for group in rule_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]
