"""Token scopes: every ``/api`` route declares one, and each is enforced for each scope
(viewer < operator < admin). A refused call is 403 naming the scope needed and changes
nothing; an allowed change leaves an audit row naming the token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from admin.api import create_app
from admin.api.auth import create_token, scope_of
from schema.audit import AuditEntry
from schema.identity import TOKEN_SCOPES
from tests.support.systems import Embedded
from workers.scheduler import control

Sample = Callable[[Embedded], tuple[str, Any]]  # the concrete path, and a JSON body


def _run(system: Embedded) -> int:
    return control.trigger(system.db, None, "t_count", force=True)


def _held(system: Embedded, path: str) -> tuple[str, Any]:
    control.hold(system.db)  # a release of jobs not held changes nothing
    return path, {"mode": "reschedule"}


def _released(system: Embedded, path: str) -> tuple[str, Any]:
    control.release(system.db, None, "reschedule")  # holding what is held changes nothing
    return path, None


def _token(system: Embedded) -> int:
    return create_token(system.db, "doomed", scope="viewer").id


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as the route declares it
    scope: str
    sample: Sample
    changes: bool = True  # unless GET, a 2xx answer means something changed (an audit row)


def _fixed(path: str, body: Any = None) -> Sample:
    return lambda _system: (path, body)


ENDPOINTS = [
    Endpoint("GET", "/api/jobs", "viewer", _fixed("/api/jobs")),
    Endpoint("GET", "/api/jobs/{name}", "viewer", _fixed("/api/jobs/t_count")),
    Endpoint("GET", "/api/jobs/{name}/runs", "viewer", _fixed("/api/jobs/t_count/runs")),
    Endpoint(
        "POST",
        "/api/jobs/{name}/trigger",
        "operator",
        _fixed("/api/jobs/t_count/trigger?force=true"),
    ),
    Endpoint("POST", "/api/jobs/{name}/enable", "operator", _fixed("/api/jobs/t_count/enable")),
    Endpoint("POST", "/api/jobs/{name}/disable", "operator", _fixed("/api/jobs/t_count/disable")),
    Endpoint(
        "PUT",
        "/api/jobs/{name}/schedule",
        "admin",
        _fixed("/api/jobs/t_count/schedule", {"interval": "10 minutes"}),
    ),
    Endpoint(
        "PUT",
        "/api/jobs/{name}/notify-on-success",
        "admin",
        _fixed("/api/jobs/t_count/notify-on-success", {"enabled": True}),
    ),
    Endpoint(
        "POST",
        "/api/jobs/{name}/backfill",
        "operator",
        _fixed(  # five minutes of the built-in heartbeat (every minute)
            "/api/jobs/heartbeat/backfill",
            {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:05:00Z"},
        ),
    ),
    Endpoint("GET", "/api/runs/{run_id}", "viewer", lambda s: (f"/api/runs/{_run(s)}", None)),
    Endpoint(
        "POST",
        "/api/runs/{run_id}/cancel",
        "operator",
        lambda s: (f"/api/runs/{_run(s)}/cancel", None),
    ),
    Endpoint(
        "POST",
        "/api/runs/{run_id}/retry",
        "operator",
        lambda s: (f"/api/runs/{_run(s)}/retry", None),  # 409: it did not fail
    ),
    Endpoint("GET", "/api/failures", "viewer", _fixed("/api/failures?job=t_fail")),
    Endpoint("GET", "/api/audit", "viewer", _fixed("/api/audit")),
    Endpoint("GET", "/api/me", "viewer", _fixed("/api/me")),
    Endpoint("GET", "/api/tokens", "admin", _fixed("/api/tokens")),
    Endpoint(
        "POST", "/api/tokens", "admin", _fixed("/api/tokens", {"name": "n", "scope": "viewer"})
    ),
    Endpoint(
        "DELETE",
        "/api/tokens/{token_id}",
        "admin",
        lambda s: (f"/api/tokens/{_token(s)}", None),
    ),
    Endpoint("POST", "/api/hold", "operator", lambda s: _released(s, "/api/hold")),
    Endpoint("POST", "/api/release", "operator", lambda s: _held(s, "/api/release")),
    Endpoint("GET", "/api/dead-letters", "viewer", _fixed("/api/dead-letters")),
    Endpoint(
        "POST",
        "/api/dead-letters/{dead_letter_id}/replay",
        "operator",
        _fixed("/api/dead-letters/7/replay"),  # 404: there is none
    ),
    Endpoint(
        "POST",
        "/api/dead-letters/replay",
        "operator",
        _fixed("/api/dead-letters/replay"),
        changes=False,  # there are none: nothing replayed, nothing to record
    ),
    Endpoint("DELETE", "/api/dead-letters", "admin", _fixed("/api/dead-letters")),
]


def _declared_scopes(route: APIRoute) -> list[str]:
    found: list[str] = []

    def walk(dependant: Any) -> None:
        scope = scope_of(dependant.call) if dependant.call is not None else None
        if scope is not None:
            found.append(scope)
        for sub in dependant.dependencies:
            walk(sub)

    walk(route.dependant)
    return found


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute with its full path; FastAPI >= 0.165 keeps an included router's
    routes behind an ``_IncludedRouter`` (its ``original_router``)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(included.routes, prefix + getattr(context, "prefix", ""))


def _api_routes(embedded: Embedded) -> list[tuple[str, APIRoute]]:
    app = create_app(embedded.runtime.settings, embedded.db, embedded.broker)
    return [(path, r) for path, r in _walk(app.routes) if path.startswith("/api")]


def test_every_api_route_declares_exactly_one_scope(embedded: Embedded) -> None:
    # Given every /api route of the app, then each declares one scope with require_scope,
    routes = _api_routes(embedded)
    assert len(routes) >= len(ENDPOINTS), "the walk lost the /api routes"
    undeclared = [
        f"{sorted(r.methods)} {path}" for path, r in routes if len(_declared_scopes(r)) != 1
    ]
    assert not undeclared, f"routes without exactly one require_scope(...): {undeclared}"
    # and the table below (tested per scope) lists each route with the scope it declares.
    declared = {(m, path): _declared_scopes(r)[0] for path, r in routes for m in r.methods}
    assert declared == {(e.method, e.path): e.scope for e in ENDPOINTS}


@pytest.fixture
def tokens(embedded: Embedded) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    app = create_app(embedded.runtime.settings, embedded.db, embedded.broker)
    made = {
        scope: create_token(embedded.db, f"{scope}-token", scope=scope) for scope in TOKEN_SCOPES
    }
    headers = {scope: {"Authorization": f"Bearer {t.token}"} for scope, t in made.items()}
    with TestClient(app) as http:
        yield http, headers


def _audit_rows(embedded: Embedded) -> int:
    with embedded.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_each_endpoint_with_each_scope(endpoint: Endpoint, embedded: Embedded, tokens: Any) -> None:
    # (One test per endpoint, the three scopes in turn on one system: a system per
    # endpoint and scope tripled this file's time for no more coverage.)
    http, headers = tokens
    for scope in TOKEN_SCOPES:
        path, body = endpoint.sample(embedded)
        allowed = TOKEN_SCOPES.index(scope) >= TOKEN_SCOPES.index(endpoint.scope)
        before = _audit_rows(embedded)
        # When the endpoint is called with a token of this scope,
        answer = http.request(endpoint.method, path, json=body, headers=headers[scope])
        if not allowed:
            # then below its scope: 403 naming the scope needed, and nothing changed;
            assert answer.status_code == 403, (scope, answer.text)
            assert f"the {endpoint.scope} scope" in answer.json()["detail"]
            assert _audit_rows(embedded) == before, scope
            continue
        # else it is served (not refused for auth),
        assert answer.status_code not in (401, 403), (scope, answer.text)
        if endpoint.method != "GET" and endpoint.changes and answer.status_code < 300:
            # and its change leaves an audit row naming the token that made it.
            with embedded.db.session() as session:
                newest = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
            assert _audit_rows(embedded) > before and newest is not None, scope
            assert newest.actor == f"{scope}-token" and newest.token_id is not None
