"""Property test of the admin API against its own OpenAPI document: whatever the input,
no response is a server error (5xx), and every response matches the documented schema
(status codes, content types, bodies). Then, against PostgreSQL, every route gets
hostile values — a NUL, an unpaired surrogate, over-long text, NaN/Infinity/1e400 — in
its path, query and body: each is refused with a 4xx and changes nothing (issue 20);
8 examples per route by default, 100 with ``--soak``.

The operations are walked with schemathesis' strategies and plain hypothesis rather than
its pytest plugin (``schemathesis.pytest.from_fixture``): that plugin rewrites pytest's
private ``Function._nodeid``, which pytest 9.1 removed, so the test broke on a fresh
install. This form needs only schemathesis' public schema API.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from admin.api import create_app
from admin.api.auth import create_token
from schema.messaging import DeadLetter
from schema.scheduling import JobRun, ScheduledJobConfig, SchedulerState
from tests.support.systems import Embedded, Services

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_input_gives_a_server_error(embedded: Embedded) -> None:
    # Given the admin API over an embedded system and a valid token
    app = create_app(embedded.runtime.settings, embedded.db, embedded.broker)
    headers = {"Authorization": f"Bearer {create_token(embedded.db, 'schemathesis').token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, "the OpenAPI document lost its operations"

    for operation in operations:
        # When each operation is called with generated input
        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            response = case.call(headers=headers)
            # Then nothing is a server error and the response matches the document
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.text[:500],
            )
            case.validate_response(response, checks=CHECKS)

        call()


# --- hostile input on every route, against PostgreSQL ------------------------------------------
# What used to reach a 500 (issue 20): text PostgreSQL cannot store (a NUL, an unpaired
# surrogate), text longer than any column here, and numbers JSON does not have.
NUL_TEXT = st.text(max_size=8).map(lambda t: t[: len(t) // 2] + "\x00" + t[len(t) // 2 :])
SURROGATE_TEXT = st.builds(
    lambda t, c: t + chr(c), st.text(max_size=4), st.integers(0xD800, 0xDFFF)
)
LONG_TEXT = st.integers(401, 20_000).map(lambda n: "9" * n)
HOSTILE_TEXT = st.one_of(NUL_TEXT, SURROGATE_TEXT, LONG_TEXT)
NON_FINITE = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
NUMBER = "__hostile_number__"


def url_part(value: Any) -> str:
    """A path or query value as a hostile client sends it: UTF-8 bytes, surrogates too."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return quote(str(value).encode("utf-8", "surrogatepass"), safe="")


def fingerprint(db: Any) -> tuple[Any, ...]:
    """What a refused request must leave as it was (tokens' last use aside)."""
    with db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(JobRun)),
            session.scalar(select(func.count()).select_from(DeadLetter)),
            sorted(
                (
                    c.job_name,
                    c.enabled,
                    c.notify_on_success,
                    c.override_times,
                    c.override_interval_s,
                )
                for c in session.scalars(select(ScheduledJobConfig))
            ),
            [(s.held, s.held_at) for s in session.scalars(select(SchedulerState))],
        )


def test_hostile_values_on_every_route_are_refused_on_postgresql(
    services: Services, request: pytest.FixtureRequest
) -> None:
    # Given the admin API over PostgreSQL and RabbitMQ, and a valid token,
    app = create_app(services.runtime.settings, services.db, services.broker)
    token = create_token(services.db, "schemathesis").token
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    before = fingerprint(services.db)
    examples = 100 if request.config.getoption("--soak") else 8
    with TestClient(app) as http:
        for operation in operations:
            # when each operation gets hostile values, then each is refused (below).
            hostile_calls(
                operation, http, headers, lambda: fingerprint(services.db) == before, examples
            )
    assert len(operations) >= 10


def hostile_calls(
    operation: Any, http: TestClient, headers: dict[str, str], unchanged: Any, examples: int
) -> None:
    """Valid requests of ``operation`` with one value made hostile: a declared parameter,
    a body field, or an extra query parameter (ignored by the route, so only text no
    route could read: a NUL or a surrogate)."""
    raw = operation.definition.raw
    slots = [(p["in"], p["name"]) for p in raw.get("parameters", [])] + [("query", "")]
    has_body = "requestBody" in raw
    if has_body:
        slots += [("body", key) for key in ("times", "interval", "enabled", "mode")]
    documented = {int(code) for code in raw["responses"]}

    @given(case=operation.as_strategy(), data=st.data())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any, data: st.DataObject) -> None:
        where, name = data.draw(st.sampled_from(slots), label="slot")
        number = where == "body" and data.draw(st.booleans(), label="non-finite")
        extra_headers = {}
        if where == "header":
            # HTTP cannot carry a NUL or a surrogate in a header (the client refuses to
            # send one): what a header can hold that the database cannot is length.
            extra_headers[name] = "k" * data.draw(st.integers(201, 5000), label="length")
            number, value = False, ""
        elif number:
            value = data.draw(NON_FINITE, label="number")
        elif not name:  # the extra query parameter
            value = data.draw(st.one_of(NUL_TEXT, SURROGATE_TEXT), label="text")
            name = "x"
        else:
            value = data.draw(HOSTILE_TEXT, label="text")
        path_values = dict(case.path_parameters or {})
        query = {k: v for k, v in (case.query or {}).items() if v is not None}
        body = dict(case.body) if isinstance(case.body, dict) else {}
        if where != "header":
            {"path": path_values, "query": query, "body": body}[where][name] = (
                NUMBER if number else value
            )
        path = operation.path
        for key, part in path_values.items():
            path = path.replace("{" + key + "}", url_part(part))
        url = path + "?" + "&".join(f"{k}={url_part(v)}" for k, v in query.items())
        content = json.dumps(body).replace(f'"{NUMBER}"', value) if has_body else None
        response = http.request(
            operation.method.upper(), url, content=content, headers={**headers, **extra_headers}
        )
        # Then it is refused with a documented 4xx (or the input check's 422), its body
        # is JSON that says why, and nothing changed.
        assert 400 <= response.status_code < 500, (url, content, response.text[:300])
        assert response.status_code in documented | {422}, (url, response.status_code)
        assert response.json()["detail"], response.text
        assert unchanged(), (url, content)

    call()
