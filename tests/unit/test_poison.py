"""Messages that can never succeed are refused at once, each with a recorded reason."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from schema.messaging import DeadLetter
from schema.scheduling import JobRun
from tests.support.systems import Embedded
from tests.support.throwaway_jobs import ThrowawayJobs
from workers.dead_letters import storable, why_malformed


def _reasons(e: Embedded) -> list[str]:
    with e.db.session() as s:
        return list(s.scalars(select(DeadLetter.reason).order_by(DeadLetter.id)))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"nonsense": 1}, "arguments do not fit t_typed"),
        ({"count": "three"}, "argument 'count' of t_typed"),
        ({"count": 1.5}, "argument 'count' of t_typed"),
        ({"count": 2, "label": 7}, "argument 'label' of t_typed"),
    ],
)
def test_arguments_of_the_wrong_name_or_type_are_dead_lettered_not_run(
    embedded: Embedded, tj: ThrowawayJobs, kwargs: dict[str, object], expected: str
) -> None:
    # Given a job with typed parameters, when a message brings arguments that cannot fit,
    actor = embedded.broker.get_actor("t_typed")
    embedded.broker.enqueue(actor.message_with_options(kwargs=kwargs))
    embedded.drain()
    # then the job never ran, no run record was made, and the dead letter says why.
    assert tj.calls == []
    (reason,) = _reasons(embedded)
    assert expected in reason
    with embedded.db.session() as s:
        assert s.scalars(select(JobRun).where(JobRun.job_name == "t_typed")).all() == []


def test_fitting_arguments_run(embedded: Embedded, tj: ThrowawayJobs) -> None:
    # Given a job with typed parameters, when a message brings arguments that fit,
    actor = embedded.broker.get_actor("t_typed")
    embedded.broker.enqueue(actor.message_with_options(kwargs={"count": 2, "label": "x"}))
    embedded.drain()
    # then it runs, and nothing is dead-lettered.
    assert tj.calls == ["t_typed"] and _reasons(embedded) == []


GOOD = {
    "queue_name": "q",
    "actor_name": "a",
    "args": [],
    "kwargs": {},
    "options": {},
    "message_id": "m-1",
    "message_timestamp": 1,
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (json.dumps({"actor_name": "a"}).encode(), "message lacks args, kwargs"),
        (json.dumps({**GOOD, "args": "x"}).encode(), "field 'args' is str"),
        (json.dumps({**GOOD, "message_timestamp": "now"}).encode(), "'message_timestamp'"),
        (json.dumps({**GOOD, "message_timestamp": True}).encode(), "'message_timestamp'"),
        (json.dumps({**GOOD, "message_id": "x" * 65}).encode(), "1 to 64 characters"),
        (json.dumps({**GOOD, "queue_name": "other"}).encode(), "names queue 'other'"),
        (json.dumps({**GOOD, "options": {"eta": "soon"}}).encode(), "option 'eta'"),
    ],
)
def test_malformed_bodies_are_named(body: bytes, expected: str) -> None:
    reason = why_malformed(body, "q")
    assert reason is not None and expected in reason


def test_a_well_formed_body_is_not_malformed() -> None:
    assert why_malformed(json.dumps(GOOD).encode(), "q") is None


def test_stored_messages_are_json_objects_without_nul_and_bounded() -> None:
    assert storable({"a": "x\x00y"}) == {"a": "x\\x00y"}
    assert storable([1]) == {"value": [1]}
    assert set(storable({"a": "x" * 20_000})) == {"truncated"}
