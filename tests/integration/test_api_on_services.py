"""The admin API tests of tests/unit/test_api.py, on PostgreSQL + RabbitMQ (the
integration ``system`` fixture) instead of SQLite + the in-process broker."""

from tests.unit.test_api import *  # noqa: F403
