"""The benchmark suite: ``python -m tests.bench`` (or ``bash scripts/bench.sh``).

Runs, in this one process tree and session, the reference benchmarks of
``../shared/bench`` (raw pika, bare Dramatiq, Celery) and then tickwork's own, on the same
RabbitMQ and PostgreSQL, each for several rounds; prints the absolute figures (median and
spread) and the ratios against the references with the goals of issue 10.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

from tests.bench import anchors, measures
from tests.bench.figures import Comparison, Results, render

COMPARISONS = [
    Comparison(
        "enqueue: client publish (confirms off) / bare Dramatiq send",
        "client publish, confirms off",
        "bare Dramatiq enqueue",
        0.8,
    ),
    Comparison(
        "enqueue: client publish (confirms on, default) / bare Dramatiq send",
        "client publish, confirms on (default)",
        "bare Dramatiq enqueue",
        None,
    ),
    Comparison(
        "drain: no-op install jobs / bare Dramatiq",
        "no-op install jobs drained, 1 worker process",
        "bare Dramatiq drain",
        0.9,
    ),
    Comparison(
        "cleanup: batched / one raw DELETE (time; lower is better)",
        "batched cleanup of expired rows",
        "raw DELETE of expired rows",
        1.5,
        at_least=False,
    ),
    Comparison(
        "drain, no-op jobs with run records, 1 process / bare Dramatiq",
        "tickwork drain, 1 worker process",
        "bare Dramatiq drain",
        0.9,
    ),
    Comparison(
        "drain, run records, 2 processes / bare Dramatiq (1 process)",
        "tickwork drain, 2 worker processes",
        "bare Dramatiq drain",
        0.9,
    ),
    Comparison(
        "drain, run records, 1 process / Celery",
        "tickwork drain, 1 worker process",
        "Celery drain (incl. worker start)",
        2.0,
    ),
    Comparison(
        "drain, run records, 1 process / raw pika consume+ack",
        "tickwork drain, 1 worker process",
        "raw pika consume+ack",
        None,
    ),
]


PARTS = ("anchors", "enqueue", "drain", "installs", "latency", "dispatcher", "cleanup")

# Goals on absolute figures (not ratios): (label, figure, ceiling).
CEILINGS = [
    (
        "dispatcher CPU per tick, 10,000 schedules, first tick < 1 s",
        "dispatcher CPU/tick, 10,000 schedules, first tick",
        1.0,
    ),
    (
        "dispatcher CPU per tick, 10,000 schedules, later ticks < 1 s",
        "dispatcher CPU/tick, 10,000 schedules, later ticks",
        1.0,
    ),
    ("enqueue→start latency p99 < 1,000 ms", "enqueue→start latency p99", 1000.0),
    ("longest cleanup transaction < 1 s", "longest cleanup transaction", 1.0),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="repeat each measurement (≥ 1)")
    parser.add_argument("--messages", type=int, default=5000, help="messages per drain/enqueue")
    parser.add_argument("--threads", type=int, default=8, help="worker threads per process")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated parts: " + ",".join(PARTS),
    )
    parser.add_argument(
        "--cleanup-rows", type=int, default=1_000_000, help="expired (and live) rows for cleanup"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.messages < 100:
        parser.error("--rounds must be ≥ 1 and --messages ≥ 100")
    wanted = {w.strip() for w in args.only.split(",") if w.strip()} or set(PARTS)
    unknown = wanted - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part {sorted(unknown)[0]!r} (known: {', '.join(PARTS)})")
    if "anchors" in wanted:
        try:
            anchors.anchor_dir()
        except FileNotFoundError as exc:
            print(f"error: {exc} (or leave them out: --only without anchors)", file=sys.stderr)
            return 2
    results = Results()
    n, rounds = args.messages, args.rounds
    started = time.monotonic()

    def step(title: str, measure: Callable[[], None]) -> None:
        for k in range(rounds):
            print(
                f"[{time.monotonic() - started:6.0f} s] {title}: round {k + 1}/{rounds}", flush=True
            )
            measure()

    amqp = measures.AMQP_URL
    if "anchors" in wanted:
        step("reference: raw pika", lambda: anchors.measure_pika(results, n, amqp))
        step(
            "reference: bare Dramatiq",
            lambda: anchors.measure_dramatiq(results, n, args.threads, amqp),
        )
        step("reference: Celery", lambda: anchors.measure_celery(results, n, amqp))
    with measures.bench_env() as env:
        if "enqueue" in wanted:
            step("tickwork: enqueue", lambda: measures.measure_enqueue(results, env, n))
            step(
                "tickwork: client publish", lambda: measures.measure_client_publish(results, env, n)
            )
        if "installs" in wanted:
            step(
                "tickwork: no-op install drain",
                lambda: measures.measure_install_drain(results, env, n),
            )
            step(
                "tickwork: 2 racing enqueuers",
                lambda: measures.measure_enqueuer_race(results, env, 2 * n),
            )
        if "drain" in wanted:
            for processes in (1, 2):
                step(
                    f"tickwork: drain with {processes} worker process(es)",
                    lambda p=processes: measures.measure_drain(results, env, n, p, args.threads),
                )
        if "latency" in wanted:
            step(
                "tickwork: enqueue→start latency",
                lambda: measures.measure_latency(results, env, 200),
            )
    if "dispatcher" in wanted:
        for count in (100, 1_000, 10_000):
            step(
                f"tickwork: dispatcher at {count:,} schedules",
                lambda c=count: measures.measure_dispatcher(results, c),
            )

    print()
    print(
        f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {_cpus()} CPUs; rounds={rounds}, messages={n}"
    )
    if "cleanup" in wanted:
        from tests.bench import cleanup_measure  # provided with the maintenance jobs

        with measures.bench_env() as env:
            step(
                f"tickwork: batched cleanup of {args.cleanup_rows:,} expired rows",
                lambda: cleanup_measure.measure_cleanup(results, env, args.cleanup_rows),
            )
    print(render(results, COMPARISONS, CEILINGS))
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
