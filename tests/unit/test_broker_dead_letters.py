"""Dead letters the broker keeps (issue 17, defect 6): messages Dramatiq dead-lettered
itself -- after their last retry, or too old for the message age limit -- sit in
RabbitMQ's ``<queue>.XQ`` (the StubBroker's dead-letter list in the embedded mode), where
the queue metric counts them. Each must be listed, replayed and purged through the API
and the CLI, as the rows the workers write themselves are.

Each test runs on each ``system``: SQLite + the in-process broker, and PostgreSQL +
RabbitMQ with the test's own queue prefix (``[services]``, marked ``integration``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dramatiq import Message
from fastapi.testclient import TestClient
from sqlalchemy import select

from admin.api import create_app
from admin.api.auth import create_token
from schema.scheduling import JobRun
from tests.conftest import run_tickwork, services_env
from tests.support.systems import Services, System
from tests.support.throwaway_jobs import ThrowawayJobs
from tests.support.waiting import wait_for
from tickwork import queues
from workers.dead_letters import UNKNOWN_FAILURE
from workers.metrics.queue_metrics import QueueDepthCollector

OLD_MS = 1_000_000  # 1970: older than any message age limit


def waiting_in_broker(system: System) -> int:
    """Dead letters the broker holds: the metric's count, summed over the queues."""
    collector = QueueDepthCollector(system.runtime.settings, system.broker)
    return sum(depth.dead for depth in collector.depths())


def too_old(system: System, actor: str = "t_count") -> Message[Any]:
    """A message the age limit refuses: Dramatiq dead-letters it, with no traceback."""
    return send(system, actor, message_timestamp=OLD_MS)


def send(system: System, actor: str, **fields: Any) -> Message[Any]:
    message: Message[Any] = Message(
        queue_name=system.runtime.settings.queue(queues.DEFAULT),
        actor_name=actor,
        args=(),
        kwargs={},
        options={},
        **fields,
    )
    system.broker.enqueue(message)
    return message


def failed_for_good(system: System) -> int:
    """A run of ``t_fail`` (1 retry) that failed for good; its id. (Sent on the runtime's
    own queue, with its prefix: the services' bare database knows no prefix.)"""
    message = system.broker.get_actor("t_fail").send()
    system.drain()
    run_id: list[int] = []

    def failed() -> bool:
        with system.db.session() as s:
            run = s.scalar(select(JobRun).where(JobRun.message_id == message.message_id))
            if run is not None and run.status == "failed":
                run_id.append(run.id)
        return bool(run_id)

    wait_for(failed, 15, "the run of t_fail failed")
    return run_id[0]


def settle(system: System, count: int) -> None:
    if isinstance(system, Services):  # the nack lands just after the worker moves on
        wait_for(lambda: waiting_in_broker(system) >= count, 15, f"{count} dead-lettered")
    else:
        system.drain()
    assert waiting_in_broker(system) == count


def test_broker_dead_letters_are_listed_replayed_and_purged(client: Any, tj: ThrowawayJobs) -> None:
    # Given a job that failed for good and a message too old to process, both dead-lettered
    # by Dramatiq itself, and counted by the queue metric;
    http, headers, system = client
    run_id = failed_for_good(system)
    old = too_old(system)
    settle(system, 2)
    queue = system.runtime.settings.queue(queues.DEFAULT)
    # when the dead letters are listed, then both are there, with queue, actor, message id,
    # and a reason: the failed job's last error and run, or that it was too old;
    listed = http.get("/api/dead-letters", headers=headers).json()
    by_actor = {letter["actor_name"]: letter for letter in listed}
    assert set(by_actor) == {"t_fail", "t_count"}, listed
    assert {letter["queue_name"] for letter in listed} == {queue}
    assert by_actor["t_count"]["message_id"] == old.message_id
    assert by_actor["t_count"]["reason"].startswith(UNKNOWN_FAILURE)
    fail_reason = by_actor["t_fail"]["reason"]
    assert "retries exhausted" in fail_reason and "RuntimeError" in fail_reason, fail_reason
    assert f"run #{run_id} failed" in fail_reason
    assert "hunter2" not in json.dumps(listed)  # the run's error is the scrubbed one
    # they are now kept in the database only (listed again: the same two, no copies),
    assert waiting_in_broker(system) == 0
    assert len(http.get("/api/dead-letters", headers=headers).json()) == 2
    # the queue filter takes the real or the logical queue name;
    assert len(http.get(f"/api/dead-letters?queue={queue}", headers=headers).json()) == 2
    assert len(http.get("/api/dead-letters?queue=default", headers=headers).json()) == 2
    assert http.get("/api/dead-letters?queue=long", headers=headers).json() == []
    # when the too-old one is replayed, then it is sent again (a fresh message) and runs,
    replayed = http.post(f"/api/dead-letters/{by_actor['t_count']['id']}/replay", headers=headers)
    assert replayed.json() == {"count": 1}
    system.drain()
    wait_for(lambda: tj.calls.count("t_count") == 1, 15, "the replayed message run")
    # and when the rest is purged, then the count says one, and nothing is left.
    assert http.delete("/api/dead-letters", headers=headers).json() == {"count": 1}
    assert http.get("/api/dead-letters", headers=headers).json() == []
    assert waiting_in_broker(system) == 0


def test_purge_and_replay_all_include_letters_never_listed(client: Any, tj: ThrowawayJobs) -> None:
    # Given two messages dead-lettered by the broker, never listed,
    http, headers, system = client
    too_old(system)
    too_old(system)
    settle(system, 2)
    # when all are replayed, then both are sent again and run;
    assert http.post("/api/dead-letters/replay", headers=headers).json() == {"count": 2}
    system.drain()
    wait_for(lambda: tj.calls.count("t_count") == 2, 15, "both replayed messages run")
    # given one more, when the dead letters are purged, then it is counted and gone.
    too_old(system, actor="t_silent")
    settle(system, 1)
    assert http.delete("/api/dead-letters", headers=headers).json() == {"count": 1}
    assert waiting_in_broker(system) == 0
    assert http.get("/api/dead-letters", headers=headers).json() == []


def test_a_refused_message_is_one_dead_letter_not_two(client: Any, tj: ThrowawayJobs) -> None:
    # Given a message for an unknown actor: the worker records why (a database row) and
    # the broker dead-letters the message too;
    http, headers, system = client
    unknown = send(system, "no_such_actor")
    settle(system, 1)
    # when listed, then it is one letter, with the worker's reason (not a generic one).
    listed = http.get("/api/dead-letters", headers=headers).json()
    assert [letter["message_id"] for letter in listed] == [unknown.message_id], listed
    assert "no_such_actor" in listed[0]["reason"]
    assert waiting_in_broker(system) == 0
    assert http.delete("/api/dead-letters", headers=headers).json() == {"count": 1}


@pytest.mark.integration
def test_a_body_that_is_no_message_is_one_dead_letter(
    services: Services, amqp_url: str, tj: ThrowawayJobs
) -> None:
    # Given a body that is not JSON, published on a queue: the consumer records why and
    # RabbitMQ keeps the body in the .XQ;
    import pika

    queue = services.runtime.settings.queue(queues.DEFAULT)
    services.broker.declare_queue(queue, ensure=True)  # the worker may not have yet
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    connection.channel().basic_publish("", queue, b"{not json")
    connection.close()
    settle(services, 1)
    # when listed, then it is one letter (the worker's row), and the .XQ is empty.
    app = create_app(services.runtime.settings, services.db, services.broker)
    headers = {"Authorization": f"Bearer {create_token(services.db, 't').token}"}
    with TestClient(app) as http:
        listed = http.get("/api/dead-letters", headers=headers).json()
    assert len(listed) == 1 and "not JSON" in listed[0]["reason"], listed
    assert listed[0]["actor_name"] == "(undecodable)"
    assert waiting_in_broker(services) == 0


@pytest.mark.integration
def test_cli_lists_replays_and_purges_broker_dead_letters(
    services: Services,
    pg_db: Any,
    amqp_url: str,
    queue_prefix: str,
    tj: ThrowawayJobs,
    tmp_path: Path,
) -> None:
    # Given two messages dead-lettered by RabbitMQ (too old), never listed,
    first, second = too_old(services), too_old(services)
    settle(services, 2)
    env = services_env(
        pg_db, amqp_url, queue_prefix, TICKWORK_JOB_MODULES="tests.support.throwaway_jobs_module"
    )
    # when `tickwork dead-letters list` runs, then both are shown, with queue and reason;
    listed = run_tickwork("dead-letters", "list", "--format", "json", cwd=tmp_path, **env)
    assert listed.returncode == 0, listed.stderr
    letters = {d["message_id"]: d for d in json.loads(listed.stdout)}
    assert set(letters) == {first.message_id, second.message_id}
    assert letters[first.message_id]["queue_name"] == f"{queue_prefix}default"
    assert letters[first.message_id]["reason"].startswith(UNKNOWN_FAILURE)
    # when one is replayed, then it runs again (here, in the test's worker);
    replayed = run_tickwork(
        "dead-letters", "replay", str(letters[first.message_id]["id"]), cwd=tmp_path, **env
    )
    assert replayed.returncode == 0, replayed.stderr
    wait_for(lambda: tj.calls.count("t_count") == 1, 15, "the replayed message run")
    # and when the rest is purged, then the count is printed and nothing is left.
    too_old(services, actor="t_silent")
    settle(services, 1)
    purged = run_tickwork("dead-letters", "purge", "--yes", cwd=tmp_path, **env)
    assert purged.returncode == 0 and "purged 2 dead letter(s)" in purged.stdout, purged
    assert waiting_in_broker(services) == 0
    listed = run_tickwork("dead-letters", "list", "--format", "json", cwd=tmp_path, **env)
    assert json.loads(listed.stdout) == []


def test_cli_in_the_embedded_mode(tmp_path: Path) -> None:
    # Given the embedded mode: the table is listed and purged; replay, which needs the
    # in-process broker of `tickwork run`, says where to do it instead.
    assert run_tickwork("dead-letters", "list", cwd=tmp_path).returncode == 0
    refused = run_tickwork("dead-letters", "replay", "1", cwd=tmp_path)
    assert refused.returncode == 1 and "tickwork run" in refused.stderr, refused
    purged = run_tickwork("dead-letters", "purge", "-y", cwd=tmp_path)
    assert purged.returncode == 0 and "purged 0" in purged.stdout, purged
