"""Hostile input never reaches a 500: the API and the CLI refuse what the database
cannot store with a clear error naming it, and change nothing (issue 20).

Each API case runs on the embedded system (SQLite, which would store a NUL) and on the
real services (PostgreSQL, which refuses it): the answer must be the same on both.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from admin.api import dead_letters as api_dead_letters
from admin.api import input_checks
from admin.cli import common
from admin.cli.main import app as cli
from schema.messaging import DeadLetter
from schema.scheduling import ScheduledJobConfig
from schema.storable import check_text, column_length
from tests.conftest import services_env
from tests.support.systems import System
from tickwork.errors import UnstorableInputError
from workers.dead_letters import record_dead_letter

Client = tuple[TestClient, dict[str, str], System]
# 83 daily times: 497 characters, more than the 400 the column holds.
EIGHTY_THREE_TIMES = ",".join(f"{h:02d}:{m:02d}" for h in range(14) for m in range(0, 60, 10))[
    : 83 * 6 - 1
]


def assert_refused(response: Any, *words: str) -> str:
    """A 422 in FastAPI's shape whose message names what was wrong; the body is JSON."""
    assert response.status_code == 422, response.text
    body = json.loads(response.content.decode("utf-8"))  # encodable, parseable
    messages = " ".join(e["msg"] for e in body["detail"])
    for word in words:
        assert word in messages, messages
    return messages


def override(system: System) -> str | None:
    with system.db.session() as session:
        config = session.get(ScheduledJobConfig, "heartbeat")
        return config.override_times if config else None


def dead_letter_count(system: System) -> int:
    with system.db.session() as session:
        return session.scalar(select(func.count()).select_from(DeadLetter)) or 0


def test_the_times_limit_is_the_columns() -> None:
    # Given the column that stores override times, then the API's limit is its length,
    assert column_length(ScheduledJobConfig.override_times) == 400
    assert len(EIGHTY_THREE_TIMES) == 497
    # and the one check refuses a value longer than it, naming it.
    with pytest.raises(UnstorableInputError, match="497 characters long; at most 400 fit"):
        check_text(EIGHTY_THREE_TIMES, "the override times", ScheduledJobConfig.override_times)


def test_a_nul_in_a_query_parameter_is_refused_and_changes_nothing(client: Client) -> None:
    http, headers, system = client
    # Given one dead letter kept,
    record_dead_letter(
        system.db,
        queue_name="default",
        message_id="m1",
        actor_name="heartbeat",
        reason="t",
        message={},
    )
    for method, path in [
        ("GET", "/api/dead-letters"),
        ("DELETE", "/api/dead-letters"),
        ("POST", "/api/dead-letters/replay"),
    ]:
        # when a queue with a NUL is asked for (list, purge or replay all),
        response = http.request(method, path + "?queue=%00", headers=headers)
        # then it is refused, naming the parameter, and the dead letter is still there.
        assert_refused(response, "'queue'", "NUL")
        assert dead_letter_count(system) == 1


URLS = [
    ("/api/jobs/heart%00beat", ["path", "NUL"]),
    ("/api/jobs/heartbeat/runs?failures=%ff", ["'failures'", "UTF-8"]),
    ("/api/dead-letters?queue=%ed%a0%80", ["'queue'", "UTF-8"]),  # a surrogate's bytes
    ("/api/dead-letters?qu%00eue=x", ["NUL"]),
]


def test_paths_and_query_strings_that_no_text_column_holds_are_refused(client: Client) -> None:
    http, headers, _system = client
    for url, words in URLS:
        assert_refused(http.get(url, headers=headers), *words)


def test_eighty_three_daily_times_are_refused_by_the_api_and_change_nothing(
    client: Client,
) -> None:
    http, headers, system = client
    # Given an override in place,
    assert http.put(
        "/api/jobs/heartbeat/schedule", json={"times": "02:30"}, headers=headers
    ).is_success
    # when 83 daily times (497 characters) are sent,
    response = http.put(
        "/api/jobs/heartbeat/schedule", json={"times": EIGHTY_THREE_TIMES}, headers=headers
    )
    # then they are refused as too long, and the override is unchanged.
    assert response.status_code == 422, response.text
    assert "400" in response.text
    assert override(system) == "02:30"


def test_times_that_grow_past_the_column_once_normalized_are_refused(client: Client) -> None:
    http, headers, system = client
    # Given 80 times written short ("0:08", 399 characters) that are stored as "00:08"
    # (479 characters),
    short = ",".join(f"{h}:{m:02d}" for h in range(10) for m in range(0, 60, 8))
    assert len(short) == 399
    # when they are sent, then they are refused, naming the limit, and nothing changes.
    response = http.put("/api/jobs/heartbeat/schedule", json={"times": short}, headers=headers)
    assert_refused(response, "override times", "at most 400 fit")
    assert override(system) is None


BODIES = [
    ('{"times": NaN}', ["NaN"]),
    ('{"times": Infinity}', ["Infinity"]),
    ('{"times": -Infinity}', ["-Infinity"]),
    ('{"times": 1e400}', ["1e400", "out of range"]),
    ('{"times": "02:30\\ud800"}', ["surrogate", "body/times"]),
    ('{"times": "02:30\\u0000"}', ["NUL", "body/times"]),
    ('{"\\udfff": 1}', ["surrogate", "key"]),
    ('{"interval": [1.5, {"x": "\\ud83d"}]}', ["body/interval/1/x"]),
]


def test_json_no_database_or_json_encoder_can_hold_is_refused(client: Client) -> None:
    http, headers, system = client
    for body, words in BODIES:
        # When a JSON body holds a non-finite number or text the database cannot store,
        response = http.put(
            "/api/jobs/heartbeat/schedule",
            content=body.encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        # then it is refused, saying what and where, and nothing changes.
        assert_refused(response, *words)
        assert override(system) is None


def test_a_validation_error_never_echoes_what_it_cannot_encode() -> None:
    # Given validation errors whose input JSON cannot hold (as FastAPI reports them),
    errors = [
        {"type": "string_type", "loc": ("body", "times"), "msg": "bad", "input": float("nan")},
        {"type": "extra_forbidden", "loc": ("body", "\ud800"), "msg": "no", "input": "\ud800"},
        {"type": "string_type", "loc": ("body", "x"), "msg": "ok", "input": "fine"},
    ]
    # when they are made safe, then each can be encoded, the odd input shown escaped,
    safe = [input_checks._safe_error(e) for e in errors]
    json.dumps(safe, allow_nan=False).encode("utf-8")
    assert safe[0]["input"] == "nan"
    assert safe[1]["input"] == "'\\ud800'" and safe[1]["loc"] == ["body", "\\ud800"]
    # and an input that can be encoded is echoed as FastAPI would.
    assert safe[2]["input"] == "fine"


def test_a_value_the_database_refuses_is_a_422_not_a_500(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, headers, system = client
    if system.db.settings.is_sqlite:
        pytest.skip("SQLite refuses no value: PostgreSQL only")

    # Given a query PostgreSQL refuses for its value (class 22, a DataError),
    def refused(db: Any, *args: Any, **kwargs: Any) -> list[Any]:
        with db.session() as session:
            session.execute(text("SELECT 1 / :zero"), {"zero": 0})
        return []

    monkeypatch.setattr(api_dead_letters, "list_dead_letters", refused)
    # when it runs behind a route, then the answer is a 422 that says the value was refused.
    response = http.get("/api/dead-letters", headers=headers)
    words = assert_refused(response, "the database refused a value")
    assert "division by zero" in words and "reachable" not in words


# --- the CLI, the same rules -------------------------------------------------------------------
@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(common, "_overrides", {})
    return CliRunner()


def test_the_cli_refuses_eighty_three_times_on_postgresql_as_a_bad_value(
    runner: CliRunner, pg_db: Any
) -> None:
    # When 83 daily times are given to the CLI on PostgreSQL,
    result = runner.invoke(
        cli,
        ["jobs", "set-schedule", "heartbeat", "--times", EIGHTY_THREE_TIMES],
        env=services_env(pg_db),
    )
    # then it is a usage error naming the limit, never a database outage,
    assert result.exit_code == 2, result.output
    assert "the override times is 497 characters long; at most 400 fit" in result.output
    assert "database:" not in result.output and "reachable" not in result.output
    # and nothing is stored.
    with pg_db.session() as session:
        config = session.get(ScheduledJobConfig, "heartbeat")
        assert config is None or config.override_times is None


def test_the_cli_names_a_value_postgresql_cannot_encode(runner: CliRunner, pg_db: Any) -> None:
    # When a queue name with an unpaired surrogate (undecodable bytes in argv) is given,
    result = runner.invoke(
        cli, ["dead-letters", "list", "--queue", "q\udcff"], env=services_env(pg_db)
    )
    # then it is a usage error naming the option and the fault, before any query.
    assert result.exit_code == 2, result.output
    assert "error: --queue contains an unpaired surrogate (\\udcff)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_cli_names_a_positional_argument_with_a_surrogate(
    runner: CliRunner, pg_db: Any
) -> None:
    result = runner.invoke(cli, ["jobs", "history", "heart\udcffbeat"], env=services_env(pg_db))
    assert result.exit_code == 2, result.output
    assert "NAME contains an unpaired surrogate" in result.output, result.output
