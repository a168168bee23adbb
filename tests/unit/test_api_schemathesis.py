"""Property test of the admin API against its own OpenAPI document: whatever the input,
no response is a server error (5xx), and every response matches the documented schema
(status codes, content types, bodies)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from producers.api import create_app
from producers.api.auth import create_token
from tests.conftest import Embedded

TOKEN: dict[str, str] = {}


@pytest.fixture
def api_schema(system: Embedded) -> Iterator[Any]:
    app = create_app(system.runtime.settings, system.db, system.broker)
    TOKEN["value"] = create_token(system.db, "schemathesis").token
    yield schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case: Any) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN['value']}"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
