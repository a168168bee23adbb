"""Failure and success e-mail, delivered to a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from schema import migrate
from schema.base import utcnow
from schema.engine import Database
from tests.conftest import free_port, make_settings
from tests.support.systems import Embedded, add_run, running
from tests.support.throwaway_jobs import ThrowawayJobs
from tickwork.schedules import floor_minute
from workers.broker import run_record_middleware
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
def mailing_system(
    tmp_path: Path, smtp: tuple[Inbox, int], tj: ThrowawayJobs
) -> Iterator[tuple[Embedded, Inbox]]:
    """The embedded system, its failure e-mails sent to ``smtp``."""
    inbox, port = smtp
    settings = make_settings(
        tmp_path, TICKWORK_SCHEDULED_JOBS_EMAIL="ops@example.org", TICKWORK_SMTP_PORT=str(port)
    )
    db = Database(settings)
    migrate.upgrade(db.engine)
    with running(Embedded, settings, db, timeout_ms=50) as system:
        yield system, inbox
    db.dispose()


def _run_scheduled(system: Embedded, tj: ThrowawayJobs, name: str) -> None:
    dispatch(system.db, system.broker, floor_minute(utcnow()), jobs=tj.scheduled(name))
    system.drain()


def test_failed_run_is_emailed_with_error_and_slot(
    mailing_system: tuple[Embedded, Inbox], tj: ThrowawayJobs
) -> None:
    # Given a job that fails, when its slot runs,
    system, inbox = mailing_system
    _run_scheduled(system, tj, "t_fail")
    # then one mail tells the operators, with the error (scrubbed) and the slot.
    (mail,) = inbox.messages
    assert mail["To"] == "ops@example.org"
    assert "t_fail FAILED" in mail["Subject"]
    body = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "RuntimeError" in body and "Slot:" in body and "hunter2" not in body


def test_success_is_silent_unless_notify_on_success(
    mailing_system: tuple[Embedded, Inbox], tj: ThrowawayJobs
) -> None:
    # Given a job that succeeds with output, when it runs, then nobody is mailed (default);
    system, inbox = mailing_system
    _run_scheduled(system, tj, "t_count")
    assert inbox.messages == []
    # when notify-on-success is turned on and it runs again, then its success is mailed.
    control.set_notify_on_success(system.db, "t_count", True)
    control.trigger(system.db, system.broker, "t_count")
    system.drain()
    (mail,) = inbox.messages
    assert "t_count succeeded" in mail["Subject"]
    assert "counted 3" in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_success_without_output_is_never_mailed(
    mailing_system: tuple[Embedded, Inbox], tj: ThrowawayJobs
) -> None:
    # Given notify-on-success on a job that says nothing, when it runs,
    system, inbox = mailing_system
    control.set_notify_on_success(system.db, "t_silent", True)
    _run_scheduled(system, tj, "t_silent")
    # then it ran, and nobody is mailed.
    assert tj.calls == ["t_silent"]
    assert inbox.messages == []


def test_run_reaped_after_its_worker_died_is_emailed(
    mailing_system: tuple[Embedded, Inbox],
) -> None:
    # Given a run left "running" by a worker that died two hours ago,
    system, inbox = mailing_system
    add_run(system.db, "t_count", status="running", started_at=utcnow() - dt.timedelta(hours=2))
    # when the next tick reaps it,
    on_reaped = run_record_middleware(system.broker).finished
    dispatch(system.db, system.broker, floor_minute(utcnow()), jobs={}, on_reaped=on_reaped)
    # then the operators hear about it like any other failure.
    (mail,) = inbox.messages
    assert "t_count FAILED" in mail["Subject"]
    assert "worker lost" in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
