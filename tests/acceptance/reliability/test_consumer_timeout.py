"""A job longer than RabbitMQ's ``consumer_timeout`` (on a private node set to seconds):
the broker takes the unacknowledged message back and delivers it again while the job is
still running. The second delivery is recognised (the run's heartbeat is fresh), deferred
and logged with the likely cause, never run a second time; the run completes once.

The remedy — a ``consumer_timeout`` above the longest job — is in docs/DEPLOY.md; the
command given there is applied and read back here too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.reliability.conftest import Figures, executions, record, scalar
from tests.acceptance.reliability.private_rabbitmq import PrivateRabbitMQ, start_private_rabbitmq
from tests.support.processes import ProcessStarter
from tests.support.waiting import wait_for

TIMEOUT_MS = 3_000


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbitMQ]:
    # The timeout is checked on the channel's tick (60 s by default): tick every second.
    node = start_private_rabbitmq(
        f"[{{rabbit, [{{consumer_timeout, {TIMEOUT_MS}}}, {{channel_tick_interval, 1000}}]}}]"
    )
    yield node
    node.stop()


def test_documented_setting_is_applied_at_runtime(rabbit: PrivateRabbitMQ) -> None:
    # docs/DEPLOY.md: rabbitmqctl eval 'application:set_env(rabbit, consumer_timeout, N).'
    rabbit.eval("application:set_env(rabbit, consumer_timeout, 7200000).")
    assert rabbit.eval("application:get_env(rabbit, consumer_timeout).") == "{ok,7200000}"


def test_a_job_outliving_consumer_timeout_is_not_run_twice(
    tmp_path: Path,
    rabbit: PrivateRabbitMQ,
    broker_env: dict[str, str],
    start_process: ProcessStarter,
) -> None:
    from tickwork.settings import load_settings
    from workers.app import build_runtime

    runtime = build_runtime(load_settings(broker_env))
    marker, busy = tmp_path / "long", tmp_path / "short"
    # Given a worker running a job far longer than the broker's consumer_timeout, while
    # other work flows on the same channel,
    worker = start_process("worker", broker_env)
    actor = runtime.broker.get_actor("rel_work")
    long_job = actor.send(seconds=12.0, marker=str(marker))
    wait_for(lambda: len(executions(marker)) == 1, 60, "long job started", processes=[worker])
    started = time.monotonic()
    for _ in range(60):
        actor.send(seconds=0.2, marker=str(busy))
        time.sleep(0.25)
        if "delivered again" in worker.output():
            break
    # when the broker times the delivery out and hands the message back,
    log = worker.output()
    # then the worker notices the second delivery while the run is alive, says why,
    assert "delivered again while it is still running" in log, log[-3000:]
    # and the run completes once; the job never started a second time.
    run_id = scalar(runtime, "SELECT id FROM job_runs WHERE message_id=:m", m=long_job.message_id)
    wait_for(
        lambda: scalar(runtime, "SELECT status FROM job_runs WHERE id=:i", i=run_id) == "succeeded",
        90,
        "long run succeeded",
        processes=[worker],
    )
    time.sleep(8)  # the deferred copy comes back (3 heartbeats: 6 s) and must be dropped
    executed = executions(marker)
    alive = worker.poll() is None
    runtime.broker.close()
    runtime.db.dispose()
    record(
        Figures(
            "job longer than consumer_timeout",
            1,
            lost=0 if executed else 1,
            duplicated=len(executed) - 1,
            stuck=0,
            max_recovery_s=time.monotonic() - started,
        )
    )
    assert executed == [str(run_id)]
    assert alive
