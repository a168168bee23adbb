"""``tickwork api-token``: the token is printed once, works for the API, and bad input
(blank name, unknown id) is refused with a clear error and nothing changed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from admin.api.auth import TOKEN_PREFIX, check_token
from admin.cli import api_tokens
from admin.cli.main import app
from schema.audit import AuditEntry, cli_actor
from schema.identity import ApiToken
from tests.support.systems import Embedded


@pytest.fixture
def runner(embedded: Embedded, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(api_tokens, "_db", lambda: embedded.db)
    return CliRunner()


def _count(embedded: Embedded) -> int:
    with embedded.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(ApiToken)) or 0)


def test_create_prints_a_working_token_once_then_list_and_revoke(
    runner: CliRunner, embedded: Embedded
) -> None:
    # given / when: a token is created
    created = runner.invoke(app, ["api-token", "create", "ci bot"])
    # then: it is printed once, works, and only its hash is stored
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith(TOKEN_PREFIX)
    row = check_token(embedded.db, token, max_age_days=1)
    assert row is not None and row.name == "ci bot" and token not in row.token_hash
    listed = runner.invoke(app, ["api-token", "list"])
    assert listed.exit_code == 0 and "ci bot" in listed.output and token not in listed.output
    # when: it is revoked, then: it no longer works
    revoked = runner.invoke(app, ["api-token", "revoke", str(row.id)])
    assert revoked.exit_code == 0, revoked.output
    assert check_token(embedded.db, token, max_age_days=1) is None


def test_blank_name_and_unknown_id_are_refused_and_change_nothing(
    runner: CliRunner, embedded: Embedded
) -> None:
    # given: no tokens
    assert _count(embedded) == 0
    # when / then: a blank name is refused with a message naming the problem
    blank = runner.invoke(app, ["api-token", "create", "   "])
    assert blank.exit_code == 2 and "token name" in blank.output
    # when / then: revoking an unknown id names the id
    unknown = runner.invoke(app, ["api-token", "revoke", "999"])
    assert unknown.exit_code == 1 and "no token with id 999" in unknown.output
    assert _count(embedded) == 0


def test_scope_and_expiry_are_stored_listed_and_audited(
    runner: CliRunner, embedded: Embedded
) -> None:
    # When an operator token is created to expire in 7 days,
    created = runner.invoke(
        app, ["api-token", "create", "night shift", "--scope", "operator", "--expires-in-days", "7"]
    )
    assert created.exit_code == 0, created.output
    assert "scope operator" in created.output
    # then it is stored with that scope and expiry, and listed with them;
    with embedded.db.session() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.scope == "operator" and row.expires_at is not None
        assert 6.9 < (row.expires_at - row.created_at).total_seconds() / 86400 <= 7
    listed = runner.invoke(app, ["api-token", "list", "--format", "json"])
    assert '"scope": "operator"' in listed.output and '"expires_at"' in listed.output
    # a token without --scope is a viewer (least privilege);
    assert runner.invoke(app, ["api-token", "create", "dashboard"]).exit_code == 0
    runner.invoke(app, ["api-token", "revoke", str(row.id)])
    with embedded.db.session() as session:
        assert [t.scope for t in session.scalars(select(ApiToken))] == ["viewer"]
        # and each change is in the audit log as the CLI's OS user.
        audit = [(a.actor, a.action) for a in session.scalars(select(AuditEntry))]
    me = cli_actor().name
    assert audit == [(me, "token-create"), (me, "token-create"), (me, "token-revoke")]
    assert me.startswith("cli:")


def test_an_unknown_scope_is_refused_and_creates_nothing(
    runner: CliRunner, embedded: Embedded
) -> None:
    bad = runner.invoke(app, ["api-token", "create", "x", "--scope", "root"])
    assert bad.exit_code == 2 and "viewer, operator or admin" in bad.output
    assert _count(embedded) == 0
