"""The run lifecycle under random interleavings (hypothesis stateful testing).

A machine drives tickwork's real code: the dispatcher (ticks, duplicate ticks, the
outbox, expiry, reaping), run now, and deliveries through Dramatiq's own
``WorkerThread.process_message`` with the full middleware stack. The network between
them is the real broker (the StubBroker, or RabbitMQ with the test's queues): messages
are taken off it and then delivered, lost, delivered too old (Dramatiq's age limit),
delivered again, or delivered to a worker that dies after starting the run and before
the job body (its message comes back, as RabbitMQ requeues unacked messages). Time
passes by ageing every timestamp, in the database and on the messages held.

Invariants: a job body never runs twice for one run; a finished run never changes;
every move is one the state machine (schema/run_lifecycle.py) allows; and once every
deadline has passed and the dispatcher has had its say, no run is left non-terminal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import queue
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import pika
import pytest
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.common import dq_name, q_name
from dramatiq.middleware import TimeLimit
from dramatiq.worker import WorkerThread
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select, text

from schema.base import utcnow
from schema.engine import Database
from schema.run_lifecycle import TERMINAL, may_move
from schema.scheduling import JobRun, SchedulerState
from tests.conftest import make_settings, service_settings
from tickwork.errors import JobBusyError, RunStateError
from workers.app import build_runtime
from workers.broker import run_record_middleware
from workers.context import RunContext, set_current_run
from workers.registry import JobSpec, get_job, job, unregister
from workers.runtime import Runtime
from workers.scheduler import control
from workers.scheduler.dispatcher import dispatch
from workers.scheduler.publish import REPUBLISH_AFTER_S

AGE_LIMIT_S = 60
LIFECYCLE_SETTINGS = {"TICKWORK_MESSAGE_AGE_LIMIT_S": str(AGE_LIMIT_S)}
# Past every deadline: age limit, default time limit (600 s), the reaper's grace.
EVERY_DEADLINE_S = AGE_LIMIT_S + 600 + 300
JOB = "t_life"
# Called inside the job body: a second worker receiving a duplicate meanwhile.
DURING_BODY: list[Callable[[], None]] = []
_TIMESTAMPS = ("queued_at", "published_at", "started_at", "finished_at", "heartbeat_at")


class Network:
    """Takes the messages off the real broker (its queue and delay queue)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.queue = runtime.settings.queue("default")
        self._channel: Any = None
        if not runtime.settings.embedded_broker:
            url = runtime.settings.broker_url or ""
            self._connection = pika.BlockingConnection(pika.URLParameters(url))

    def take_all(self) -> list[Message[Any]]:
        bodies: list[bytes] = []
        for name in (self.queue, dq_name(self.queue)):
            if self.runtime.settings.embedded_broker:
                found = self.runtime.broker.queues.get(name)
                while found is not None:
                    try:
                        bodies.append(found.get_nowait())
                    except queue.Empty:
                        break
            else:
                bodies.extend(self._get_all(name))
        messages = []
        for body in bodies:
            message = Message.decode(body)
            if message.queue_name.endswith(".DQ"):  # as Dramatiq's consumer does when due
                options = {k: v for k, v in message.options.items() if k != "eta"}
                message = message._replace(queue_name=q_name(message.queue_name), options=options)
            messages.append(message)
        return messages

    def _get_all(self, name: str) -> Iterator[bytes]:
        for _ in range(10_000):
            if self._channel is None or self._channel.is_closed:
                self._channel = self._connection.channel()
            try:
                _method, _props, body = self._channel.basic_get(name, auto_ack=True)
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet: empty
                return
            if body is None:
                return
            yield body

    def close(self) -> None:
        if not self.runtime.settings.embedded_broker:
            with suppress(Exception):
                self._connection.close()


class _Consumer:
    def post_process_message(self, message: MessageProxy) -> None:
        pass  # acked or nacked: the message leaves the network either way


class _WorkQueue:
    def task_done(self) -> None:
        pass


class Harness:
    """The runtime, a worker thread driven by hand, and the body executions."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db: Database = runtime.db
        self.bodies: Counter[int] = Counter()
        self.break_publish = False
        self.network = Network(runtime)
        self.spec: JobSpec = dataclasses.replace(get_job(JOB), schedule="* * * * *")
        broker = runtime.broker
        real_enqueue = broker.enqueue

        def enqueue(message: Message[Any], *, delay: int | None = None) -> Any:
            if self.break_publish:
                self.break_publish = False
                raise ConnectionError("broker unreachable (test)")
            return real_enqueue(message, delay=delay)

        broker.enqueue = enqueue  # type: ignore[method-assign]
        consumers: Any = _AnyKey(_Consumer())
        self.thread = WorkerThread(
            broker=broker, consumers=consumers, work_queue=_WorkQueue(), worker_timeout=100
        )
        self.records = run_record_middleware(broker)
        self.time_limit = next(m for m in broker.middleware if isinstance(m, TimeLimit))

    def reset(self) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(text("DELETE FROM job_runs"))
            conn.execute(text("DELETE FROM scheduler_state"))
        self.network.take_all()
        self.bodies.clear()
        self.break_publish = False

    def deliver(self, message: Message[Any]) -> None:
        self.thread.process_message(MessageProxy(message))

    def die_after_start(self, message: Message[Any]) -> None:
        """A worker takes the message, records the start, and dies before the body."""
        proxy = MessageProxy(message)
        with suppress(Exception):
            self.runtime.broker.emit_before("process_message", proxy)
        self.time_limit.after_process_message(self.runtime.broker, proxy)
        self.records._contexts.pop(id(proxy), None)  # the process is gone
        set_current_run(None)

    def age(self, seconds: int) -> None:
        """Time passes: every timestamp in the database moves ``seconds`` back."""
        shift = dt.timedelta(seconds=seconds)
        with self.db.session() as s:
            for run in s.scalars(select(JobRun)):
                for column in (*_TIMESTAMPS, "scheduled_for"):
                    value = getattr(run, column)
                    if value is not None:
                        setattr(run, column, value - shift)
            for state in s.scalars(select(SchedulerState)):
                if state.dispatched_until is not None:
                    state.dispatched_until -= shift

    def runs(self) -> dict[int, tuple[str, dt.datetime | None]]:
        with self.db.session() as s:
            return {r.id: (r.status, r.finished_at) for r in s.scalars(select(JobRun))}

    def tick(self) -> None:
        dispatch(
            self.db,
            self.runtime.broker,
            utcnow(),
            jobs={JOB: self.spec},
            on_reaped=self.records.finished,
        )

    def settle(self) -> None:
        """Only the outbox, expiry and the reaper (no new slot)."""
        dispatch(self.db, self.runtime.broker, utcnow(), jobs={}, on_reaped=self.records.finished)


class _AnyKey(dict[str, Any]):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value

    def __getitem__(self, key: str) -> Any:
        return self.value


def lifecycle_machine(harness: Harness) -> type[RuleBasedStateMachine]:
    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            harness.reset()
            self.held: list[Message[Any]] = []  # taken off the broker, not yet delivered
            self.delivered: list[Message[Any]] = []
            self.seen: dict[int, tuple[str, dt.datetime | None]] = {}

        def _take(self) -> None:
            self.held.extend(harness.network.take_all())

        def _pick(self, index: int) -> Message[Any] | None:
            self._take()
            if not self.held:
                return None
            return self.held.pop(index % len(self.held))

        @rule(duplicate=st.booleans())
        def tick(self, duplicate: bool) -> None:
            harness.tick()
            if duplicate:
                harness.tick()
            self._take()

        @rule(force=st.booleans())
        def run_now(self, force: bool) -> None:
            with suppress(JobBusyError):
                control.trigger(harness.db, harness.runtime.broker, JOB, force=force)
            self._take()

        @rule(index=st.integers(0, 50))
        def operator_cancels(self, index: int) -> None:
            going = sorted(i for i, (s, _f) in harness.runs().items() if s not in TERMINAL)
            if going:
                with suppress(RunStateError):  # it finished in between
                    control.cancel_run(harness.db, going[index % len(going)])

        @rule()
        def broker_down_for_the_next_publish(self) -> None:
            harness.break_publish = True

        @rule(index=st.integers(0, 50))
        def deliver(self, index: int) -> None:
            message = self._pick(index)
            if message is not None:
                harness.deliver(message)
                self.delivered.append(message)
                self._take()

        @rule(index=st.integers(0, 50))
        def deliver_too_old(self, index: int) -> None:
            message = self._pick(index)
            if message is not None:
                too_old = message.message_timestamp - (AGE_LIMIT_S + 1) * 1000
                harness.deliver(message.copy(message_timestamp=too_old))
                self._take()

        @rule(index=st.integers(0, 50))
        def lose(self, index: int) -> None:
            self._pick(index)  # purged, or sent where nobody listens

        @rule(index=st.integers(0, 50))
        def redeliver(self, index: int) -> None:
            if self.delivered:
                harness.deliver(self.delivered[index % len(self.delivered)])
                self._take()

        @rule(index=st.integers(0, 50))
        def duplicate_arrives_while_the_body_runs(self, index: int) -> None:
            message = self._pick(index)
            if message is not None:
                DURING_BODY.append(lambda: harness.deliver(message))
                harness.deliver(message)
                DURING_BODY.clear()
                self.delivered.append(message)
                self._take()

        @rule(index=st.integers(0, 50))
        def worker_dies_after_start(self, index: int) -> None:
            message = self._pick(index)
            if message is not None:
                harness.die_after_start(message)
                self.held.append(message)  # unacked: the broker gives it back

        @rule(seconds=st.sampled_from([1, 5, 20, 61, 200, 700]))
        def time_passes(self, seconds: int) -> None:
            harness.age(seconds)
            shift = dt.timedelta(seconds=seconds)
            self.seen = {
                i: (status, None if at is None else at - shift)
                for i, (status, at) in self.seen.items()
            }
            self.held = [
                m.copy(message_timestamp=m.message_timestamp - seconds * 1000) for m in self.held
            ]

        @invariant()
        def no_body_ran_twice_for_one_run(self) -> None:
            twice = {run_id: n for run_id, n in harness.bodies.items() if n > 1}
            assert not twice, f"job bodies ran more than once: {twice}"

        @invariant()
        def finished_runs_never_change_and_moves_are_allowed(self) -> None:
            now = harness.runs()
            for run_id, (status, finished_at) in now.items():
                before = self.seen.get(run_id)
                if before is None:
                    continue
                if before[0] in TERMINAL:
                    assert (status, finished_at) == before, f"run {run_id} changed after finishing"
                else:
                    assert may_move(before[0], status) or _two_moves(before[0], status), (
                        f"run {run_id}: {before[0]} -> {status} is not a move of the machine"
                    )
            self.seen = now

        @invariant()
        def a_run_canceled_by_an_operator_ends_canceled(self) -> None:
            with harness.db.session() as session:
                wrong = session.execute(
                    select(JobRun.id, JobRun.status).where(
                        JobRun.cancel_requested_at.is_not(None),
                        JobRun.status.in_(TERMINAL),
                        JobRun.status != "canceled",
                    )
                ).all()
            assert not wrong, f"runs with a cancel request that ended otherwise: {wrong}"

        def teardown(self) -> None:
            harness.break_publish = False
            # Every deadline passes, with the dispatcher's passes in between: the outbox
            # sends what a broken publish left (after its 15 s), the workers take what
            # is on the broker, then every other deadline passes.
            harness.age(REPUBLISH_AFTER_S + 1)
            harness.settle()
            self._take()
            for message in self.held:
                harness.deliver(message)
            self.held = []
            harness.network.take_all()  # deferred duplicates: they would be dropped
            harness.age(EVERY_DEADLINE_S)
            harness.settle()
            stuck = {i: s for i, (s, _f) in harness.runs().items() if s not in TERMINAL}
            assert not stuck, f"runs left non-terminal past every deadline: {stuck}"
            self.no_body_ran_twice_for_one_run()

    return Lifecycle


def _two_moves(source: str, target: str) -> bool:
    """Two moves between observations (e.g. queued -> running -> succeeded in one
    delivery)."""
    return any(may_move(source, mid) and may_move(mid, target) for mid in ("running", "queued"))


@pytest.fixture
def life_job() -> Iterator[Callable[[], Counter[int]]]:
    """The job ``t_life``: counts its body's executions per run."""
    bodies: Counter[int] = Counter()

    @job(description="test: lifecycle")
    def t_life(ctx: RunContext) -> int:
        bodies[ctx.run_id] += 1
        while DURING_BODY:
            DURING_BODY.pop()()
        return 1

    yield lambda: bodies
    unregister(JOB)


def _check(runtime: Runtime, bodies: Counter[int], examples: int) -> None:
    harness = Harness(runtime)
    harness.bodies = bodies
    try:
        run_state_machine_as_test(
            lifecycle_machine(harness),
            settings=settings(
                max_examples=examples,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        harness.network.close()


def test_lifecycle_on_sqlite(
    tmp_path: Any, life_job: Callable[[], Counter[int]], request: pytest.FixtureRequest
) -> None:
    from schema import migrate

    db = Database(make_settings(tmp_path, **LIFECYCLE_SETTINGS))
    migrate.upgrade(db.engine)
    runtime = build_runtime(db.settings, db)
    try:
        _check(runtime, life_job(), examples=500 if request.config.getoption("--soak") else 100)
    finally:
        runtime.broker.close()
        db.dispose()


@pytest.mark.integration
def test_lifecycle_on_postgresql_and_rabbitmq(
    pg_db: Any,
    amqp_url: str,
    queue_prefix: str,
    life_job: Callable[[], Counter[int]],
    request: pytest.FixtureRequest,
) -> None:
    pg_db.settings = service_settings(pg_db, amqp_url, queue_prefix, **LIFECYCLE_SETTINGS)
    runtime = build_runtime(pg_db.settings, pg_db)
    try:
        _check(runtime, life_job(), examples=200 if request.config.getoption("--soak") else 40)
    finally:
        runtime.broker.close()
