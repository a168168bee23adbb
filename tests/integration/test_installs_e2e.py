"""Installs end to end on the real PostgreSQL + RabbitMQ: client → enqueue → worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pytest
from dramatiq import Message
from sqlalchemy import func, insert, select

from producers.client import InstallClient
from schema.installs import JOB_CANCELED, Job, JobStepResult
from schema.messaging import DeadLetter
from schema.orgs import Org, ScratchOrg
from tests.conftest import service_settings
from tests.install_data import ACCESS_TOKEN, create_install, get_job, make_plan, make_user
from tests.support.systems import Services, running
from tests.support.waiting import wait_for
from workers.app import build_runtime
from workers.installs.enqueuer import enqueue_pending


class EventTap:
    """A queue bound to the events exchange, as a UI would bind one."""

    def __init__(self, url: str, exchange: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        self.exchange = exchange
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, exchange, routing_key="#")

    def events(self) -> list[tuple[str, str]]:
        """(routing key, id) of the events that came since the last call."""
        out = []
        while True:
            method, _props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return out
            data = json.loads(body)
            out.append((method.routing_key, data["id"]))

    def collect(self, count: int, timeout_s: float) -> list[tuple[str, str]]:
        """The events that come until there are ``count`` (fails after ``timeout_s``)."""
        seen: list[tuple[str, str]] = []

        def enough() -> bool:
            seen.extend(self.events())
            return len(seen) >= count

        wait_for(enough, timeout_s, f"{count} events")
        return seen

    def close(self) -> None:
        self.channel.exchange_delete(self.exchange)
        self.connection.close()


@dataclass
class InstallSystem:
    runtime: Any
    client: InstallClient
    tap: EventTap

    @property
    def db(self) -> Any:
        return self.runtime.db

    def job(self, job_id: int) -> Job:
        return get_job(self.db, job_id)

    def wait_job(self, job_id: int, statuses: tuple[str, ...], timeout_s: float = 30) -> Job:
        wait_for(lambda: self.job(job_id).status in statuses, timeout_s, f"job {job_id} end")
        return self.job(job_id)


@pytest.fixture
def system(pg_db: Any, amqp_url: str, queue_prefix: str) -> Iterator[InstallSystem]:
    """PostgreSQL + RabbitMQ + a worker (4 threads), the install client, and a UI's tap
    on the events exchange."""
    settings = service_settings(pg_db, amqp_url, queue_prefix)
    tap = EventTap(amqp_url, settings.queue(settings.events_exchange))
    with running(Services, settings, pg_db, threads=4, timeout_ms=100) as services:
        yield InstallSystem(services.runtime, InstallClient(pg_db, services.broker, settings), tap)
    tap.close()


def test_create_enqueue_run_complete_with_events(system: InstallSystem) -> None:
    # Given a plan of a command and a callable, and a user with a token,
    steps = [
        ("Deploy", "command", "echo deployed to $TICKWORK_ORG_ID", True),
        ("Configure", "task", "tests.install_data:warn_step", True),
    ]
    # when a service creates the install job,
    job_id = create_install(system.client, system.db, steps, "00DE2E")
    # then a worker runs it to completion through RabbitMQ,
    job = system.wait_job(job_id, ("complete", "failed", "canceled"))
    assert job.status == "complete", job.exception
    assert job.success_at is not None and job.enqueued_at is not None
    assert "deployed to 00DE2E" in job.log
    with system.db.session() as s:
        statuses = sorted(
            r.status for r in s.scalars(select(JobStepResult).where(JobStepResult.job_id == job_id))
        )
    assert statuses == ["ok", "warn"]
    # and a UI bound to the topic exchange saw it start and complete.
    seen = system.tap.collect(2, timeout_s=10)
    assert seen == [("job.started", str(job_id)), ("job.completed", str(job_id))]


def test_cancel_mid_run_stops_before_the_next_step(system: InstallSystem) -> None:
    # Given an install running its first step, with a second one after it,
    steps = [
        ("Wait", "command", "sleep 2", True),
        ("Never", "command", "echo should-not-run", True),
    ]
    job_id = create_install(system.client, system.db, steps, "00DCANCEL")
    wait_for(lambda: "Running step 'Wait'" in system.job(job_id).log, 20, "first step started")
    # when it is canceled, then the running step finishes and the next one never starts.
    assert system.client.cancel_job(job_id) == "cancel requested"
    job = system.wait_job(job_id, ("complete", "failed", "canceled"))
    assert job.status == "canceled" and job.exception == JOB_CANCELED
    assert "should-not-run" not in job.log
    with system.db.session() as s:
        count = s.scalar(select(func.count()).where(JobStepResult.job_id == job_id))
    assert count == 1


def test_a_step_failure_fails_the_job_scrubbed(system: InstallSystem) -> None:
    # Given an install whose step fails with the user's token in its error,
    steps = [("Login", "task", "tests.install_data:leaky_failing_step", True)]
    job_id = create_install(system.client, system.db, steps, "00DFAIL")
    # when it runs, then the job fails, its error and log without the token.
    job = system.wait_job(job_id, ("complete", "failed", "canceled"))
    assert job.status == "failed" and job.exception is not None
    assert "RuntimeError: login failed with token ***" in job.exception
    assert ACCESS_TOKEN not in job.exception + job.log and "hunter2" not in job.exception


def _scratch(system: InstallSystem, request: str) -> ScratchOrg:
    with system.db.session() as s:
        row = s.scalar(select(ScratchOrg).where(ScratchOrg.uuid == request))
        assert row is not None
        return row


def test_scratch_org_success_installs_the_plan(system: InstallSystem) -> None:
    plan = make_plan(
        system.db,
        [("Deploy", "command", "echo ok", True)],
        [("Check", "tests.install_data:passing_check", "error")],
    )
    request = system.client.request_scratch_org(plan_id=plan.plan_id, email="sam@example.com")
    wait_for(lambda: _scratch(system, request).status != "started", 30, "scratch org")
    scratch = _scratch(system, request)
    assert scratch.status == "complete", scratch.exception
    assert scratch.email is None
    with system.db.session() as s:
        job_id = s.scalar(select(Job.id).where(Job.org_id == scratch.org_id))
    assert job_id is not None
    assert system.wait_job(job_id, ("complete", "failed", "canceled")).status == "complete"


def test_scratch_org_failure_is_marked_and_the_org_deleted(system: InstallSystem) -> None:
    plan = make_plan(
        system.db,
        [("Deploy", "command", "echo ok", True)],
        [("Crash", "tests.install_data:leaky_failing_step", "error")],
    )
    request = system.client.request_scratch_org(plan_id=plan.plan_id, email="sam@example.com")
    wait_for(lambda: _scratch(system, request).status != "started", 30, "scratch org")
    scratch = _scratch(system, request)
    # The org was created, then its preflight crashed: failed, and delete_scratch_org ran.
    assert scratch.status == "failed" and scratch.email is None
    assert scratch.exception and "preflight of the new scratch org ended failed" in (
        scratch.exception
    )

    def org_deleted() -> bool:
        with system.db.session() as s:
            return s.scalar(select(Org).where(Org.org_id == scratch.org_id)) is None

    wait_for(org_deleted, 20, "scratch org deleted")
    with system.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_a_malformed_message_is_dead_lettered_on_rabbitmq(system: InstallSystem) -> None:
    settings = system.runtime.settings
    broker = system.runtime.broker
    bad = Message(
        queue_name=settings.queue("long"),
        actor_name="run_flows",
        args=(),
        kwargs={"v": 1, "job_id": "DROP TABLE jobs"},
        options={},
    )
    broker.enqueue(bad)

    def lettered() -> bool:
        with system.db.session() as s:
            return (
                s.scalar(select(DeadLetter).where(DeadLetter.message_id == bad.message_id))
                is not None
            )

    wait_for(lettered, 20, "dead letter recorded")
    wait_for(lambda: broker.get_queue_message_counts(settings.queue("long"))[2] == 1, 10, "XQ")


def test_two_enqueuers_racing_over_many_jobs_enqueue_each_exactly_once(
    pg_db: Any, amqp_url: str, queue_prefix: str, request: pytest.FixtureRequest
) -> None:
    # Given 2,000 created jobs (10,000 with --soak) and no worker consuming the long queue,
    total = 10_000 if request.config.getoption("--soak") else 2_000
    settings = service_settings(pg_db, amqp_url, queue_prefix)
    runtime = build_runtime(settings, pg_db)
    plan = make_plan(pg_db, [("One", "command", "true", True)])
    user = make_user(pg_db)
    with pg_db.session() as s:
        s.execute(
            insert(Job),
            [
                {"plan_id": plan.plan_id, "org_id": f"00D{i:08d}", "user_id": user, "steps": []}
                for i in range(total)
            ],
        )
    # when two enqueuers run at the same time,
    counts: list[int] = []
    errors: list[BaseException] = []

    def enqueuer() -> None:
        try:
            counts.append(enqueue_pending(pg_db, runtime.broker, runtime.settings, batch_size=200))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=enqueuer) for _ in range(2)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=280)
    elapsed = time.perf_counter() - started
    assert not errors, errors
    # then every job was enqueued exactly once, both did part of the work,
    assert sum(counts) == total and all(c > 0 for c in counts), counts
    with pg_db.session() as s:
        ids = list(s.scalars(select(Job.message_id)))
    assert len(ids) == total and None not in ids and len(set(ids)) == total
    # and the long queue holds exactly that many run_flows messages.
    ready = runtime.broker.get_queue_message_counts(settings.queue("long"))[0]
    assert ready == total
    print(f"\n{total:,} jobs enqueued by two racing enqueuers in {elapsed:.1f} s: {counts}")
    runtime.broker.close()
