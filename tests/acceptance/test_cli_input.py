"""Bad input at the command line: one clear line, a non-zero exit, nothing changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_tickwork


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TICKWORK_BROKER_URL": "redis://localhost"}, "error: TICKWORK_BROKER_URL: must start"),
        ({"TICKWORK_WORKERS": "4"}, "error: TICKWORK_WORKERS: unknown setting"),
        ({"TICKWORK_MAX_RETRIES": "-1"}, "error: TICKWORK_MAX_RETRIES:"),
    ],
)
def test_bad_settings_stop_startup_with_one_line(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = run_tickwork("run", cwd=tmp_path, **env)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".tickwork").exists()  # nothing was created


def test_jobs_table_markdown_and_json(tmp_path: Path) -> None:
    assert run_tickwork("migrate", cwd=tmp_path).returncode == 0
    table = run_tickwork("jobs", cwd=tmp_path, COLUMNS="160")
    assert table.returncode == 0 and "every minute" in table.stdout
    assert "prune_run_history" in table.stdout and "17 3 * * *" in table.stdout
    narrow = run_tickwork("jobs", cwd=tmp_path, COLUMNS="80")
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines())
    assert "prune_run_history" in narrow.stdout  # names are never wrapped
    markdown = run_tickwork("jobs", "--format", "markdown", cwd=tmp_path)
    assert "| `heartbeat` | `* * * * *` | every minute |" in markdown.stdout
    listed = json.loads(run_tickwork("jobs", "--format", "json", cwd=tmp_path).stdout)
    assert {"heartbeat", "prune_run_history"} <= {j["name"] for j in listed}


def test_set_schedule_rejects_times_and_interval_and_saves_nothing(tmp_path: Path) -> None:
    assert run_tickwork("migrate", cwd=tmp_path).returncode == 0
    both = run_tickwork(
        "jobs", "set-schedule", "heartbeat", "--times", "02:00", "--interval", "05:00", cwd=tmp_path
    )
    assert both.returncode == 2 and "not both" in both.stderr  # usage error
    unknown = run_tickwork("jobs", "disable", "no_such_job", cwd=tmp_path)
    assert unknown.returncode == 1 and "unknown job 'no_such_job'" in unknown.stderr
    listed = json.loads(run_tickwork("jobs", "--format", "json", cwd=tmp_path).stdout)
    heartbeat = next(j for j in listed if j["name"] == "heartbeat")
    assert heartbeat["schedule_source"] == "default" and heartbeat["enabled"] is True
    ok = run_tickwork("jobs", "set-schedule", "heartbeat", "--interval", "05:00", cwd=tmp_path)
    assert ok.returncode == 0
    listed = json.loads(run_tickwork("jobs", "--format", "json", cwd=tmp_path).stdout)
    heartbeat = next(j for j in listed if j["name"] == "heartbeat")
    assert heartbeat["schedule_words"] == "every 5 minutes"


def test_schedule_explain(tmp_path: Path) -> None:
    result = run_tickwork(
        "schedule",
        "explain",
        "0 30 * * * *",
        "--from",
        "2026-03-29T00:00:00+00:00",
        "--count",
        "2",
        "--format",
        "json",
        cwd=tmp_path,
    )
    data = json.loads(result.stdout)
    assert data["words"] == "hourly at :30"
    assert data["next"] == ["2026-03-29T00:30:00+00:00", "2026-03-29T01:30:00+00:00"]
    assert set(data) >= {"expression", "words", "next", "warnings"}
    bad = run_tickwork("schedule", "explain", "0 25 * * *", cwd=tmp_path)
    assert bad.returncode == 2 and "hour 25 is out of range" in bad.stderr  # usage error
    noisy = run_tickwork("schedule", "explain", "* * 1 * *", "--format", "json", cwd=tmp_path)
    assert "1440 times a day" in json.loads(noisy.stdout)["warnings"][0]


def test_hold_and_release_from_the_cli(tmp_path: Path) -> None:
    assert run_tickwork("migrate", cwd=tmp_path).returncode == 0
    assert run_tickwork("hold", cwd=tmp_path).stdout.strip() == "all jobs held"
    neither = run_tickwork("release", cwd=tmp_path)
    assert neither.returncode == 2 and "exactly one" in neither.stderr  # usage error
    listed = json.loads(run_tickwork("jobs", "--format", "json", cwd=tmp_path).stdout)
    assert all(j["next_run"] is None for j in listed)  # held: nothing will run
    released = run_tickwork("release", "--reschedule", cwd=tmp_path)
    assert released.returncode == 0 and released.stdout.startswith("released")


def test_own_job_modules_are_listed_and_a_missing_one_is_named(tmp_path: Path) -> None:
    # Given a user's module of jobs next to the project,
    (tmp_path / "my_jobs.py").write_text(
        "from workers.registry import job\n"
        "@job(description='nightly report', schedule='0 2 * * *', timezone='Europe/Paris')\n"
        "def nightly_report(ctx):\n    return 0\n"
    )
    env = {"TICKWORK_JOB_MODULES": "my_jobs", "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"}
    assert run_tickwork("migrate", cwd=tmp_path, **env).returncode == 0
    # when the jobs are listed, then the user's job is there with its schedule;
    listed = json.loads(run_tickwork("jobs", "--format", "json", cwd=tmp_path, **env).stdout)
    (mine,) = [j for j in listed if j["name"] == "nightly_report"]
    assert mine["schedule"] == "0 2 * * *"
    # and a module that does not exist stops `check` with one line naming it.
    bad = run_tickwork("check", cwd=tmp_path, TICKWORK_JOB_MODULES="my_jobz")
    assert bad.returncode != 0
    assert "my_jobz" in bad.stdout + bad.stderr


def test_jobs_before_migrate_creates_the_embedded_database(tmp_path: Path) -> None:
    # Given a directory where nothing has run (embedded mode: a local SQLite file),
    # when jobs are listed,
    result = run_tickwork("jobs", cwd=tmp_path)
    # then the database is created and migrated on first use, and the jobs are listed;
    # one note on stderr says so (PostgreSQL: see tests/acceptance/test_cli_finish.py).
    assert result.returncode == 0, result.stderr
    assert "heartbeat" in result.stdout
    assert (tmp_path / ".tickwork" / "tickwork.sqlite3").exists()
    assert result.stderr.startswith("note: created the embedded database")
