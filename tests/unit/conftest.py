"""Fixtures shared by the unit tests of the admin API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from admin.api import create_app
from admin.api.auth import create_token
from tests.support.systems import System


@pytest.fixture
def client(system: System) -> Iterator[tuple[TestClient, dict[str, str], System]]:
    """The admin API on the system under test, with a valid bearer token's headers."""
    app = create_app(system.runtime.settings, system.db, system.broker)
    token = create_token(system.db, "tests").token
    with TestClient(app) as http:
        yield http, {"Authorization": f"Bearer {token}"}, system
