"""The scheduler-behaviour tests of tests/unit/test_dispatch.py, on PostgreSQL + RabbitMQ.

Duplicate ticks, redelivered messages, 10 minutes of downtime under each catch-up
policy, overlap, prechecks, retries, run now, overrides, hold/release and reaping —
the same given/when/then, with the ``system`` fixture from this folder's conftest.
"""

from tests.unit.test_dispatch import *  # noqa: F403
