"""The run state machine: every state, every move, who makes it and by when.

docs/RUN_LIFECYCLE.md explains it with a diagram; this module is the same table in
code, used by the property test (tests/unit/test_lifecycle_stateful.py) and by the
queries below that decide which runs still count.

    queued ──(delivered to a worker)──────────────▶ running
    queued ──(overlap: the job is busy at its slot)▶ skipped
    queued ──(message too old / refused / lost)───▶ failed
    running ─(job returned)───────────────────────▶ succeeded | skipped (precheck)
    running ─(job raised, retries left)───────────▶ queued (retry after a backoff)
    running ─(job raised, no retry left)──────────▶ failed
    running ─(worker died repeatedly / past limit)▶ failed
    queued ──(operator cancels)───────────────────▶ canceled
    running ─(ends after a cancel request)────────▶ canceled (job checks ctx.cancelled)

A non-terminal run always has a deadline after which someone moves it on:

- ``queued``, not yet published: the outbox sends it (each tick; each second in
  ``tickwork run``);
- ``queued``, published: a worker takes it; if its message never comes, it can no longer
  run once its due time plus the message age limit has passed (Dramatiq drops older
  messages), and the dispatcher expires it then, as ``failed`` with the reason;
- ``running``: its worker refreshes a heartbeat; when the heartbeat is stale, the
  message's redelivery takes the run over, and past the job's time limit (plus grace)
  the dispatcher fails it as "worker lost".

Runs that provably cannot progress (a stale heartbeat; a queued run past its expiry)
never block their job's next slot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, or_

from schema.scheduling import FINISHED_STATUSES, RUN_STATUSES, JobRun

STALE_HEARTBEATS = 3  # a run whose heartbeat is this many intervals old lost its worker
EXPIRY_GRACE = dt.timedelta(minutes=2)  # clocks, and the dispatcher's own minute
# The skip reason of a slot a worker found its job busy at (overlap judged when due).
OVERLAP_REASON = "the job was still running when this slot came (overlap policy: skip)"


@dataclass(frozen=True)
class Move:
    source: str
    target: str
    by: str  # who makes the move
    when: str


MOVES: tuple[Move, ...] = (
    Move("queued", "running", "a worker (run-record middleware)", "its message is delivered"),
    Move("queued", "skipped", "a worker", "its slot is due while the job runs (overlap skip)"),
    Move("queued", "failed", "a worker", "its message is too old or refused when delivered"),
    Move("queued", "failed", "the dispatcher", "due + message age limit passed, never delivered"),
    Move("queued", "canceled", "an operator", "on request"),
    Move("running", "succeeded", "a worker", "the job returned"),
    Move("running", "skipped", "a worker", "the job's precheck found nothing to do"),
    Move("running", "queued", "a worker (retries)", "the job raised and has retries left"),
    Move("running", "failed", "a worker", "the job raised with no retry left, or timed out"),
    Move("running", "failed", "a worker", "its earlier deliveries' workers all died"),
    Move("running", "failed", "the dispatcher", "still running past time limit + grace"),
    Move("running", "running", "a worker", "redelivered after its worker died (stale beat)"),
    Move("running", "canceled", "a worker", "it ends after an operator's cancel request"),
    Move("running", "canceled", "the dispatcher", "lost past its limit, cancel requested"),
)
ALLOWED = frozenset((m.source, m.target) for m in MOVES)
TERMINAL = frozenset(FINISHED_STATUSES)
assert {m.source for m in MOVES} | {m.target for m in MOVES} == set(RUN_STATUSES)
assert not {m.source for m in MOVES} & TERMINAL, "a finished run never moves again"


def may_move(source: str, target: str) -> bool:
    """True when the state machine allows ``source`` → ``target``."""
    return source == target if source in TERMINAL else (source, target) in ALLOWED


def live_after(now: dt.datetime, heartbeat_s: int) -> dt.datetime:
    """A running run whose heartbeat is older than this has lost its worker."""
    return now - dt.timedelta(seconds=STALE_HEARTBEATS * heartbeat_s)


def expires_before(now: dt.datetime, message_age_limit_s: int) -> dt.datetime:
    """A published queued run due before this can never start: its message is too old."""
    return now - dt.timedelta(seconds=message_age_limit_s) - EXPIRY_GRACE


def running_live(alive_after: dt.datetime) -> ColumnElement[bool]:
    """Runs executing on a live worker: heartbeat (or start) newer than ``alive_after``."""
    return and_(
        JobRun.status == "running",
        func.coalesce(JobRun.heartbeat_at, JobRun.started_at) > alive_after,
    )


def expired(now: dt.datetime, message_age_limit_s: int) -> ColumnElement[bool]:
    """Published queued runs whose message can no longer start."""
    cutoff = expires_before(now, message_age_limit_s)
    return and_(
        JobRun.status == "queued",
        JobRun.published_at.is_not(None),
        JobRun.published_at < cutoff,
        or_(JobRun.scheduled_for.is_(None), JobRun.scheduled_for < cutoff),
    )


def blocking(now: dt.datetime, heartbeat_s: int, message_age_limit_s: int) -> ColumnElement[bool]:
    """Runs that make the job busy for its overlap policy: queued and due (not expired),
    or running on a live worker."""
    cutoff = expires_before(now, message_age_limit_s)
    queued_and_due = and_(
        JobRun.status == "queued",
        or_(JobRun.scheduled_for.is_(None), JobRun.scheduled_for <= now),
        or_(JobRun.published_at.is_(None), JobRun.published_at >= cutoff),
    )
    return or_(queued_and_due, running_live(live_after(now, heartbeat_s)))
