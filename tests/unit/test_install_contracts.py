"""Contracts validate on send and on receipt; a bad message is dead-lettered, once."""

from __future__ import annotations

import pytest
from dramatiq import Message
from sqlalchemy import select

from schema.messaging import DeadLetter
from tests.support.systems import Embedded
from tickwork import contracts
from tickwork.errors import ValidationError
from tickwork.publish import publish


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"v": 1, "job_id": "3"}, "job_id: Input should be a valid integer (got '3')"),
        ({"v": 1, "job_id": 0}, "job_id: Input should be greater than 0"),
        ({"job_id": 3}, "no contract version 'v'"),
        ({"v": 2, "job_id": 3}, "contract version 2 is not supported"),
        ({"v": 1, "job_id": 3, "org": "x"}, "org: Extra inputs are not permitted"),
    ],
)
def test_decode_says_what_is_wrong(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        contracts.decode(contracts.RUN_FLOWS, (), kwargs)
    assert says in str(raised.value) and str(raised.value).startswith("run_flows:")


def test_every_install_actor_has_a_contract_that_round_trips() -> None:
    samples = [
        contracts.EnqueueInstallJob(job_id=1),
        contracts.RunFlows(job_id=2),
        contracts.Preflight(preflight_id=3),
        contracts.CreateScratchOrg(scratch_org_uuid="a" * 36),
        contracts.DeleteScratchOrg(scratch_org_uuid="b" * 36),
        contracts.UpdateAllTranslations(language="fr"),
        contracts.UpdateAllTranslations(),
    ]
    assert {contracts.actor_for(p) for p in samples} == set(contracts.CONTRACTS)
    for payload in samples:
        kwargs = contracts.encode(payload)
        assert kwargs["v"] == 1
        assert contracts.decode(contracts.actor_for(payload), (), kwargs) == payload
    with pytest.raises(ValidationError, match="positional"):
        contracts.decode(contracts.RUN_FLOWS, (1,), {"v": 1, "job_id": 1})


def test_a_malformed_message_is_dead_lettered_and_the_worker_carries_on(
    embedded: Embedded,
) -> None:
    # Given a message for update_all_translations built by hand, bypassing the client,
    queue = embedded.runtime.settings.queue("default")
    bad = Message(
        queue_name=queue,
        actor_name="update_all_translations",
        args=(),
        kwargs={"v": 1, "language": 42},
        options={},
    )
    embedded.broker.enqueue(bad)
    # and a good one after it,
    good = contracts.UpdateAllTranslations(language="de")
    publish(embedded.broker, embedded.runtime.settings, good)
    # when the worker drains the queue,
    embedded.drain()
    # then the bad one is recorded with the reason and failed to the dead-letter queue,
    with embedded.db.session() as s:
        letters = list(s.scalars(select(DeadLetter)))
    assert len(letters) == 1
    assert letters[0].message_id == bad.message_id
    assert "language: Input should be a valid string (got 42)" in letters[0].reason
    assert embedded.broker.dead_letters_by_queue[queue][0].message_id == bad.message_id
    # and the worker went on to process the good one (nothing else was dead-lettered).
    assert len(embedded.broker.dead_letters_by_queue[queue]) == 1
    assert embedded.broker.queues[queue].qsize() == 0


def test_install_actors_retry_only_transient_errors(embedded: Embedded) -> None:
    from sqlalchemy.exc import OperationalError

    from workers.installs.backends.protocol import StepFailed

    retry_when = embedded.broker.get_actor("delete_scratch_org").options["retry_when"]
    assert retry_when(0, ConnectionRefusedError()) and retry_when(0, TimeoutError())
    assert retry_when(0, OperationalError("SELECT 1", {}, Exception("server closed")))
    assert not retry_when(0, StepFailed("the org refused"))
    assert not retry_when(5, ConnectionRefusedError())  # TICKWORK_MAX_RETRIES (5) reached
    assert embedded.broker.get_actor("run_flows").options["max_retries"] == 0
