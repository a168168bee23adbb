"""Property test of the admin API against its own OpenAPI document: whatever the input,
no response is a server error (5xx), and every response matches the documented schema
(status codes, content types, bodies).

The operations are walked with schemathesis' strategies and plain hypothesis rather than
its pytest plugin (``schemathesis.pytest.from_fixture``): that plugin rewrites pytest's
private ``Function._nodeid``, which pytest 9.1 removed, so the test broke on a fresh
install. This form needs only schemathesis' public schema API.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from admin.api import create_app
from admin.api.auth import create_token
from tests.support.systems import Embedded

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
