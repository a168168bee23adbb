"""``tickwork runs failures|cancel|retry`` and ``tickwork audit``: the same controls as
the API, audited as ``cli:<os user>``; bad input is refused and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from admin.cli import audit as audit_cli
from admin.cli import jobs as jobs_cli
from admin.cli.main import app
from schema.audit import AuditEntry, cli_actor
from schema.scheduling import JobRun
from tests.support.systems import Embedded
from workers.scheduler import control


@pytest.fixture
def runner(embedded: Embedded, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(jobs_cli, "_db", lambda: embedded.db)
    monkeypatch.setattr(jobs_cli, "_broker", lambda db: embedded.broker)
    monkeypatch.setattr(audit_cli, "open_database", lambda: embedded.db)
    return CliRunner()


def _status(embedded: Embedded, run_id: int) -> Any:
    with embedded.db.session() as session:
        run = session.get(JobRun, run_id)
        assert run is not None
        return run.status, run.retry_of


def test_failures_retry_and_cancel_from_the_cli(runner: CliRunner, embedded: Embedded) -> None:
    # Given a failed run,
    failed = control.trigger(embedded.db, embedded.broker, "t_fail")
    embedded.drain()
    # then `runs failures` lists it, as JSON too, and filters by job and time;
    table = runner.invoke(app, ["runs", "failures"])
    assert table.exit_code == 0 and "t_fail" in table.output
    listed = json.loads(runner.invoke(app, ["runs", "failures", "-f", "json"]).stdout)
    assert [r["id"] for r in listed] == [failed]
    none = runner.invoke(app, ["runs", "failures", "--job", "t_count"])
    assert none.exit_code == 0 and "no failures of t_count" in none.output
    assert "no failures" in runner.invoke(app, ["runs", "failures", "--since", "2999-01-01"]).output
    assert json.loads(
        runner.invoke(app, ["runs", "failures", "--since", "1h", "-f", "json"]).output
    )
    bad = runner.invoke(app, ["runs", "failures", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output
    # when it is retried, then a linked run of its job is queued and runs;
    retried = runner.invoke(app, ["runs", "retry", str(failed)])
    assert retried.exit_code == 0, retried.output
    new_id = int(retried.output.split()[2].rstrip(","))
    embedded.drain()
    assert _status(embedded, new_id) == ("failed", failed)
    # a run that did not fail cannot be retried, nor a finished run canceled (exit 1);
    ok = control.trigger(embedded.db, embedded.broker, "t_count")
    embedded.drain()
    refused = runner.invoke(app, ["runs", "retry", str(ok)])
    assert refused.exit_code == 1 and "not failed" in refused.output
    finished = runner.invoke(app, ["runs", "cancel", str(ok)])
    assert finished.exit_code == 1 and "is succeeded" in finished.output
    assert runner.invoke(app, ["runs", "cancel", "999999"]).exit_code == 1
    # a queued run is canceled at once.
    queued = control.trigger(embedded.db, None, "t_count")
    canceled = runner.invoke(app, ["runs", "cancel", str(queued)])
    assert canceled.exit_code == 0 and f"run {queued} canceled" in canceled.output
    assert _status(embedded, queued) == ("canceled", None)
    # Each change is audited as the CLI's OS user.
    with embedded.db.session() as session:
        rows = [(a.actor, a.action) for a in session.scalars(select(AuditEntry))]
    me = cli_actor().name
    assert (me, "retry") in rows and (me, "cancel") in rows


def test_audit_shows_who_did_what(runner: CliRunner, embedded: Embedded) -> None:
    # Given a job disabled from the CLI,
    assert runner.invoke(app, ["jobs", "disable", "t_count"]).exit_code == 0
    # when the audit log is listed, then it says who, what, and before → after;
    shown = runner.invoke(app, ["audit", "--action", "disable", "-f", "json"])
    assert shown.exit_code == 0, shown.output
    (row,) = json.loads(shown.stdout)
    assert row["actor"] == cli_actor().name and row["target"] == "job:t_count"
    assert row["before"] == {"enabled": True} and row["after"] == {"enabled": False}
    assert "→" in runner.invoke(app, ["audit"]).output
    # an unknown action is a usage error naming the known ones.
    bad = runner.invoke(app, ["audit", "--action", "explode"])
    assert bad.exit_code == 2 and "disable" in bad.output
