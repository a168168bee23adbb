"""PostgreSQL with a standby, promoted under load: tickwork on libpq's multi-host URL
(``host1,host2`` with ``target_session_attrs=read-write``) follows the new primary.

Two private servers: a primary, and a streaming standby made with ``pg_basebackup -R``.
A worker drains jobs; the primary is stopped and the standby promoted; the worker's next
connections find the promoted server, and every job ends with one succeeded record."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.reliability.conftest import Figures, executions, record, scalar, suite_env
from tests.acceptance.reliability.private_postgres import DATABASE, PrivatePostgres, _bin_dir
from tests.conftest import service_unavailable
from tests.support.processes import ProcessStarter
from tests.support.waiting import wait_for


class Standby(PrivatePostgres):
    """A streaming replica of ``primary`` (``pg_basebackup -R``), on its own port."""

    def replicate(self, primary: PrivatePostgres) -> None:
        self._check(
            "pg_basebackup",
            self._run(
                "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.data),
                "-R",
                "-X",
                "stream",
                timeout=120,
            ),
        )
        with (self.data / "postgresql.conf").open("a") as conf:  # later lines win
            conf.write(f"\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n")
        self.start()

    def promote(self) -> None:
        self._check(
            "pg_ctl promote",
            self._run("pg_ctl", "promote", "-w", "-t", "60", "-D", str(self.data), timeout=90),
        )


@pytest.fixture
def primary_and_standby(soak: bool) -> Iterator[tuple[PrivatePostgres, Standby]]:
    if not soak:  # two servers, a base backup and a worker: about 2 minutes here
        pytest.skip("PostgreSQL failover with a promoted standby: --soak")
    bin_dir = _bin_dir()
    if bin_dir is None:
        service_unavailable("PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup)")
        raise AssertionError("unreachable")
    primary, standby = PrivatePostgres(bin_dir), Standby(bin_dir)
    try:
        primary.init()
        standby.replicate(primary)
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


def test_standby_promoted_under_load_multi_host_url_follows(
    tmp_path: Path,
    primary_and_standby: tuple[PrivatePostgres, Standby],
    amqp_url: str,
    queue_prefix: str,
    start_process: ProcessStarter,
    soak: bool,
) -> None:
    from tickwork.settings import load_settings
    from workers.app import build_runtime

    primary, standby = primary_and_standby
    total = 1_000 if soak else 200
    marker = tmp_path / "executions"
    # Given tickwork on both servers' URL, writes going to the one that accepts them,
    url = (
        f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/{DATABASE}"
        "?target_session_attrs=read-write&connect_timeout=5"
    )
    env = suite_env(tmp_path, url, amqp_url, queue_prefix)
    runtime: Any = build_runtime(load_settings(env))
    worker = start_process("worker", env)
    actor = runtime.broker.get_actor("rel_work")
    for _ in range(total):
        actor.send(seconds=0.05, marker=str(marker))
    wait_for(
        lambda: len(executions(marker)) > total // 5, 90, "drain under way", processes=[worker]
    )
    # when the primary stops and the standby is promoted (a failover),
    failed_at = time.monotonic()
    primary.stop()
    standby.promote()
    runtime.db.engine.dispose()  # this test's own pool held connections to the old primary
    # then the worker carries on against the new primary: every job succeeded, once.
    wait_for(
        lambda: scalar(runtime, "SELECT count(*) FROM job_runs WHERE status='succeeded'") >= total,
        180,
        "every run succeeded on the promoted server",
        processes=[worker],
    )
    recovery_s = time.monotonic() - failed_at
    records = scalar(runtime, "SELECT count(*) FROM job_runs")
    executed = executions(marker)
    in_recovery = scalar(runtime, "SELECT pg_is_in_recovery()")
    port = scalar(runtime, "SELECT current_setting('port')")
    record(
        Figures(
            "PostgreSQL standby promoted under load",
            total,
            lost=total - len(set(executed)),
            duplicated=len(executed) - len(set(executed)) + max(0, records - total),
            stuck=scalar(runtime, "SELECT count(*) FROM job_runs WHERE status<>'succeeded'"),
            max_recovery_s=recovery_s,
        )
    )
    runtime.broker.close()
    runtime.db.dispose()
    assert in_recovery is False and int(port) == standby.port
    assert worker.poll() is None
    assert records == total and len(set(executed)) == total
    assert len(executed) == total, "a job ran twice"
