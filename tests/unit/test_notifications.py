"""Failure and success e-mail, delivered to a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from dramatiq import Worker

from schema import migrate
from schema.base import utcnow
from schema.engine import Database
from tests.conftest import free_port, make_settings
from tests.unit import scheduler_jobs as tj
from tickwork.schedules import floor_minute
from workers.app import build_runtime
from workers.scheduler import control
from workers.scheduler.dispatcher import dispatch


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def mailing_system(tmp_path: Path, smtp: tuple[Inbox, int]) -> Iterator[tuple[Any, Inbox]]:
    inbox, port = smtp
    settings = make_settings(
        tmp_path, TICKWORK_SCHEDULED_JOBS_EMAIL="ops@example.org", TICKWORK_SMTP_PORT=str(port)
    )
    db = Database(settings)
    migrate.upgrade(db.engine)
    runtime = build_runtime(settings, db)
    worker = Worker(runtime.broker, worker_timeout=50, worker_threads=2)
    worker.start()
    yield runtime, inbox
    worker.stop()
    db.dispose()


def _run(runtime: Any, name: str) -> None:
    tj.calls.clear()
    dispatch(runtime.db, runtime.broker, floor_minute(utcnow()), jobs=tj.scheduled(name))
    for queue in list(runtime.broker.queues):
        if not queue.endswith((".DQ", ".XQ")):
            runtime.broker.join(queue, timeout=10_000, fail_fast=False)


def test_failed_run_is_emailed_with_error_and_slot(mailing_system: tuple[Any, Inbox]) -> None:
    runtime, inbox = mailing_system
    _run(runtime, "t_fail")
    (mail,) = inbox.messages
    assert mail["To"] == "ops@example.org"
    assert "t_fail FAILED" in mail["Subject"]
    body = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "RuntimeError" in body and "Slot:" in body and "hunter2" not in body


def test_success_is_silent_unless_notify_on_success(mailing_system: tuple[Any, Inbox]) -> None:
    runtime, inbox = mailing_system
    _run(runtime, "t_count")
    assert inbox.messages == []  # default: successes are not mailed
    control.set_notify_on_success(runtime.db, "t_count", True)
    control.trigger(runtime.db, runtime.broker, "t_count")
    for queue in list(runtime.broker.queues):
        runtime.broker.join(queue, timeout=10_000, fail_fast=False)
    (mail,) = inbox.messages
    assert "t_count succeeded" in mail["Subject"]
    assert "counted 3" in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_success_without_output_is_never_mailed(mailing_system: tuple[Any, Inbox]) -> None:
    runtime, inbox = mailing_system
    control.set_notify_on_success(runtime.db, "t_silent", True)
    _run(runtime, "t_silent")
    assert tj.calls == ["t_silent"]
    assert inbox.messages == []


def test_run_reaped_after_its_worker_died_is_emailed(mailing_system: tuple[Any, Inbox]) -> None:
    # Given a run left "running" by a worker that died two hours ago,
    runtime, inbox = mailing_system
    import datetime as dt

    from schema.scheduling import JobRun

    with runtime.db.session() as s:
        s.add(
            JobRun(
                job_name="t_count",
                status="running",
                trigger="manual",
                started_at=utcnow() - dt.timedelta(hours=2),
            )
        )
    # when the next tick reaps it,
    from workers.broker import run_record_middleware

    on_reaped = run_record_middleware(runtime.broker).finished
    dispatch(runtime.db, runtime.broker, floor_minute(utcnow()), jobs={}, on_reaped=on_reaped)
    # then the operators hear about it like any other failure.
    (mail,) = inbox.messages
    assert "t_count FAILED" in mail["Subject"]
    assert "worker lost" in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
