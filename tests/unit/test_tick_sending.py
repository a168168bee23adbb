"""The scheduler keeps trying to send a tick while the broker restarts."""

from __future__ import annotations

from typing import Any

import pytest

from producers.ticker import send_tick_patiently


class FlakyActor:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[dict[str, Any]] = []

    def send_with_options(self, **options: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker restarting")
        self.sent.append(options)


def test_a_tick_is_sent_once_the_broker_is_back() -> None:
    # Given a broker that refuses the first two publishes,
    actor = FlakyActor(failures=2)
    # when a tick is sent patiently, then it arrives once, with its minute.
    assert send_tick_patiently(actor, "2026-11-29T10:00:00+00:00", patience_s=10)
    assert actor.sent == [{"scheduled_at": "2026-11-29T10:00:00+00:00"}]


def test_a_tick_that_cannot_be_sent_is_given_up_loudly(caplog: pytest.LogCaptureFixture) -> None:
    # Given a broker that stays away longer than the patience,
    actor = FlakyActor(failures=1_000)
    # when a tick is sent, then the scheduler gives up on it without raising (it lives
    # on to send the next tick, which catches up), and says so as an error.
    assert not send_tick_patiently(actor, "2026-11-29T10:00:00+00:00", patience_s=0.2)
    assert actor.sent == []
    assert any("NOT sent" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_a_process_that_only_publishes_declares_the_tick_itself() -> None:
    from dramatiq.brokers.stub import StubBroker
    from periodiq import PeriodiqMiddleware

    from producers.ticker import declare_tick_actor
    from tickwork.contracts import TICK
    from tickwork.settings import load_settings

    # Given a broker with no worker actors (a sender's) and a queue prefix,
    broker = StubBroker()
    broker.add_middleware(PeriodiqMiddleware())
    settings = load_settings({"TICKWORK_QUEUE_PREFIX": "p."})
    # when the ticker asks for the tick,
    tick = declare_tick_actor(broker, settings)
    # then it is declared on the scheduler queue, every minute, for periodiq to send,
    assert tick.actor_name == TICK and tick.queue_name == "p.scheduler"
    assert str(tick.options["periodic"]) == "* * * * *"
    # and asking again gives the same actor (a broker that has one keeps it).
    assert declare_tick_actor(broker, settings) is tick
    broker.close()
