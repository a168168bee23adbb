"""Malformed and hostile messages, published raw to a real worker's queue around good
ones: every hostile one is dead-lettered with its reason, the worker stays up, and every
good one is processed once. Messages are generated with hypothesis (1,000 by default,
10,000 with ``--soak``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.acceptance.reliability.conftest import Figures, executions, record, scalar
from tests.support.processes import Process
from tests.support.waiting import wait_for

MAX_MESSAGE_BYTES = 65_536
FIELDS = ("queue_name", "actor_name", "args", "kwargs", "options", "message_id")


@dataclass
class Hostile:
    kind: str
    body: bytes
    message_id: str | None  # set when the body carries a usable id: its row is findable
    expected: str  # a piece of the recorded reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


def _message(queue: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "queue_name": queue,
        "actor_name": "rel_work",
        "args": [],
        "kwargs": {"seconds": 0},
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    base.update(fields)
    return base


def hostile_messages(queue: str, actors: set[str]) -> st.SearchStrategy[Hostile]:
    """``actors``: the registered ones (an "unknown actor" must be none of them)."""

    def encoded(kind: str, expected: str) -> Callable[[dict[str, Any]], Hostile]:
        return lambda m: Hostile(kind, json.dumps(m).encode(), m["message_id"], expected)

    not_json = (
        st.binary(min_size=1, max_size=200)
        .filter(_not_json)
        .map(lambda b: Hostile("bad JSON", b, None, "not JSON"))
    )
    not_object = json_values.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: Hostile("JSON but not an object", json.dumps(v).encode(), None, "not an object")
    )
    missing = st.sets(st.sampled_from(FIELDS), min_size=1).map(
        lambda gone: Hostile(
            "fields missing",
            json.dumps({k: v for k, v in _message(queue).items() if k not in gone}).encode(),
            None,
            "lacks",
        )
    )
    wrong_field = (
        st.tuples(st.sampled_from(("args", "kwargs", "options")), json_values)
        .filter(
            lambda fv: (
                not isinstance(fv[1], (list, dict)) or (fv[0] != "args" and isinstance(fv[1], list))
            )
        )
        .map(
            lambda fv: encoded("field of the wrong type", f"field {fv[0]!r}")(
                _message(queue, **{fv[0]: fv[1]})
            )
        )
    )
    unknown_actor = (
        st.text(min_size=1, max_size=80)
        .filter(lambda a: a not in actors)
        .map(lambda a: encoded("unknown actor", "unknown actor")(_message(queue, actor_name=a)))
    )
    extra_argument = st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda k: k not in ("seconds", "marker", "run_id")),
        json_values,
        min_size=1,
        max_size=3,
    ).map(lambda kw: encoded("unknown argument", "do not fit")(_message(queue, kwargs=kw)))
    too_many = st.lists(json_values, min_size=3, max_size=5).map(
        lambda args: encoded("too many arguments", "do not fit")(_message(queue, args=args))
    )
    wrong_type = st.one_of(
        json_values.filter(lambda v: isinstance(v, (str, list, dict, bool)) or v is None).map(
            lambda v: ("seconds", v)
        ),
        json_values.filter(lambda v: not isinstance(v, str)).map(lambda v: ("marker", v)),
    ).map(
        lambda kv: encoded("argument of the wrong type", f"argument {kv[0]!r}")(
            _message(queue, kwargs={kv[0]: kv[1]})
        )
    )
    huge = st.integers(MAX_MESSAGE_BYTES, 3 * MAX_MESSAGE_BYTES).map(
        lambda n: encoded("huge payload", "exceeds TICKWORK_MAX_MESSAGE_BYTES")(
            _message(queue, kwargs={"marker": "x" * n})
        )
    )
    return st.one_of(
        not_json,
        not_object,
        missing,
        wrong_field,
        unknown_actor,
        extra_argument,
        too_many,
        wrong_type,
        huge,
    )


def _consumers(env: dict[str, str], queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(env["TICKWORK_BROKER_URL"]))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:  # not declared yet
        return 0
    finally:
        if connection.is_open:
            connection.close()


def _not_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return True
    return False


def test_hostile_messages_are_dead_lettered_with_reasons_and_good_ones_run(
    tmp_path: Path,
    env: dict[str, str],
    runtime: Any,
    workers: Callable[[], Process],
    soak: bool,
) -> None:
    total = 10_000 if soak else 1_000
    queue = runtime.broker.get_actor("rel_work").queue_name
    good_marker = tmp_path / "good"
    # Given a stream of generated hostile messages, with a good one after every ninth,
    generated: list[Hostile] = []

    @settings(
        max_examples=total,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_messages(queue, set(runtime.broker.actors)))
    def collect(message: Hostile) -> None:
        generated.append(message)

    collect()
    hostile = generated[:total]
    good_ids: list[str] = []
    stream: list[bytes] = []
    for i, message in enumerate(hostile):
        stream.append(message.body)
        if i % 9 == 8:
            good = _message(queue, kwargs={"seconds": 0, "marker": str(good_marker)})
            good_ids.append(good["message_id"])
            stream.append(json.dumps(good).encode())
    # when they are published raw to the queue a real worker consumes,
    worker = workers()
    connection = pika.BlockingConnection(pika.URLParameters(env["TICKWORK_BROKER_URL"]))
    channel = connection.channel()
    # (publish only once the worker consumes: a message to a queue not yet declared by it
    # would be dropped by RabbitMQ as unroutable)
    wait_for(lambda: _consumers(env, queue) > 0, 60, "the worker consuming", processes=[worker])
    started = time.monotonic()
    for body in stream:
        channel.basic_publish(
            "", queue, body, pika.BasicProperties(delivery_mode=2, content_type="application/json")
        )
    connection.close()

    # then every hostile message gets a dead-letter row, and every good one runs once,
    def rows() -> int:
        return int(scalar(runtime, "SELECT count(*) FROM dead_letters"))

    def good_runs() -> int:
        return int(scalar(runtime, "SELECT count(*) FROM job_runs WHERE status='succeeded'"))

    wait_for(
        lambda: rows() >= len(hostile) and good_runs() >= len(good_ids),
        600 if soak else 180,
        f"{len(hostile)} dead letters and {len(good_ids)} good runs "
        f"(have {rows()} and {good_runs()})",
        processes=[worker],
    )
    elapsed_s = time.monotonic() - started
    time.sleep(1)  # anything extra (a duplicate row, a second run) would show by now
    with runtime.db.engine.connect() as conn:
        from sqlalchemy import text

        letters = conn.execute(text("SELECT message_id, reason FROM dead_letters")).all()
    reasons = {message_id: reason for message_id, reason in letters}
    wrong_reason = [
        (m.kind, m.expected, reasons.get(m.message_id))
        for m in hostile
        if m.message_id is not None and m.expected not in (reasons.get(m.message_id) or "")
    ]
    executed = executions(good_marker)  # run ids
    # and the worker is still alive, and nothing is left unacknowledged on the queue.
    alive = worker.poll() is None
    connection = pika.BlockingConnection(pika.URLParameters(env["TICKWORK_BROKER_URL"]))
    channel = connection.channel()
    left = channel.queue_declare(queue, passive=True).method.message_count
    dead = channel.queue_declare(queue + ".XQ", passive=True).method.message_count
    connection.close()
    record(
        Figures(
            "hostile messages (+ good ones around them)",
            len(hostile),
            lost=len(good_ids) - len(executed) + max(0, len(hostile) - len(letters)),
            duplicated=max(0, len(executed) - len(good_ids)) + max(0, len(letters) - len(hostile)),
            stuck=left,
            max_recovery_s=elapsed_s,
        )
    )
    assert alive, "the worker died"
    assert wrong_reason == [], wrong_reason[:10]
    assert len(letters) == len(hostile) and dead == len(hostile)
    assert sorted(set(executed)) == sorted(executed) and len(executed) == len(good_ids)
    assert left == 0
    kinds = {m.kind for m in hostile}
    assert len(kinds) == 9, kinds  # every kind was generated


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "TICKWORK_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES)}
