"""The system under test, in process: a runtime (database, broker, actors) and a Dramatiq
worker consuming from it. Two kinds, built by fixtures in tests/conftest.py:

- :class:`Embedded`: SQLite in the test's folder + Dramatiq's StubBroker (``embedded``);
- :class:`Services`: the real PostgreSQL + RabbitMQ, with the test's own queue prefix
  (``services``).

``system`` is parametrized over both, so one test checks the same behaviour on each (as
Dramatiq's own tests run over the stub and the RabbitMQ broker).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from dramatiq import Worker
from sqlalchemy import func, select

from schema.engine import Database
from schema.scheduling import JobRun
from tests.support.waiting import wait_for
from tickwork.settings import Settings
from workers.app import build_runtime
from workers.runtime import Runtime


@dataclass
class System:
    runtime: Runtime
    worker: Worker

    @property
    def db(self) -> Database:
        return self.runtime.db

    @property
    def broker(self) -> Any:
        return self.runtime.broker

    def drain(self) -> None:
        """Return once everything sent so far has been processed."""
        raise NotImplementedError


class Embedded(System):
    def drain(self) -> None:
        """Process everything queued, including delayed messages already due."""
        for _ in range(2):  # a second pass catches messages enqueued by the first (retries)
            for queue in list(self.broker.queues):
                if not queue.endswith((".DQ", ".XQ")):
                    self.broker.join(queue, timeout=30_000, fail_fast=False)
            self.worker.join()


class Services(System):
    def drain(self, timeout_s: float = 30) -> None:
        """Wait until no run is queued or running (steady for half a second): RabbitMQ
        has no join, so the run records tell."""
        quiet_since: list[float] = []

        def quiet_for_half_a_second() -> bool:
            with self.db.session() as s:
                busy = s.scalar(
                    select(func.count())
                    .select_from(JobRun)
                    .where(JobRun.status.in_(("queued", "running")))
                )
            if busy:
                quiet_since.clear()
                return False
            if not quiet_since:
                quiet_since.append(time.monotonic())
            return time.monotonic() - quiet_since[0] > 0.5

        wait_for(
            quiet_for_half_a_second, timeout_s, "runs no longer queued or running", poll_s=0.05
        )


S = TypeVar("S", bound=System)


@contextmanager
def running(
    kind: type[S], settings: Settings, db: Database, *, threads: int = 2, timeout_ms: int
) -> Iterator[S]:
    """A ``kind`` of system on ``db``: the runtime built, a worker started; stopped after.
    ``timeout_ms``: how long the worker waits for a message before it looks again."""
    runtime = build_runtime(settings, db)
    worker = Worker(runtime.broker, worker_timeout=timeout_ms, worker_threads=threads)
    worker.start()
    try:
        yield kind(runtime, worker)
    finally:
        worker.stop()
        runtime.broker.close()


def add_run(db: Database, job_name: str, *, trigger: str = "manual", **fields: Any) -> int:
    """A run record written straight to the database (as a worker that vanished left
    it); its id."""
    with db.session() as s:
        run = JobRun(job_name=job_name, trigger=trigger, **fields)
        s.add(run)
        s.flush()
        return int(run.id)
