"""The benchmark suite: ``python -m tests.bench`` (or ``bash scripts/bench.sh``).

Runs, in this one process tree and session, the reference benchmarks of ``../shared/bench``
and then tickwork's own, on the same RabbitMQ and PostgreSQL, each for several rounds;
prints the absolute figures (median and spread) and the ratios of medians against the
references with their goals (issues 10 and 17). The references are brokers with no durable
record per job (raw pika, bare Dramatiq, Celery) and peers that keep one in PostgreSQL, as
tickwork's run records do (pgqueuer, procrastinate, Celery with its database result
backend); each peer runs in a fresh database of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

from tests.bench import anchors, measures
from tests.bench.figures import Comparison, Results, render

ONE = "tickwork drain, 1 worker process"
TWO = "tickwork drain, 2 worker processes"

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
    # Issue 17: no-op jobs with run records against bare Dramatiq and the peers that keep
    # a durable record per job (these supersede issue 10's 0.9 goals for this drain).
    Comparison("drain, run records, 1 process / bare Dramatiq", ONE, "bare Dramatiq drain", 0.8),
    Comparison("drain, run records, 1 process / pgqueuer", ONE, "pgqueuer drain", 1.5),
    Comparison("drain, run records, 1 process / procrastinate", ONE, "procrastinate drain", 4.0),
    Comparison(
        "drain, run records, 1 process / Celery + DB results", ONE, "Celery + DB results drain", 4.0
    ),
    Comparison("drain, run records, 2 processes / 1 process", TWO, ONE, 1.6),
    Comparison(
        "cleanup: batched / one raw DELETE (time; lower is better)",
        "batched cleanup of expired rows",
        "raw DELETE of expired rows",
        1.5,
        at_least=False,
    ),
    # Context: issue 10's 0.9 goal here is superseded by the 2-process / 1-process one above;
    # its 2.0 goal against Celery without results stands.
    Comparison("drain, run records, 2 processes / bare Dramatiq", TWO, "bare Dramatiq drain", None),
    Comparison(
        "drain, run records, 1 process / Celery (no results)",
        ONE,
        "Celery drain (incl. worker start)",
        2.0,
    ),
    Comparison(
        "drain, run records, 1 process / raw pika consume+ack", ONE, "raw pika consume+ack", None
    ),
]


PARTS = ("anchors", "enqueue", "drain", "installs", "latency", "dispatcher", "cleanup")
PART_HELP = {
    "anchors": "the references of ../shared/bench (pick them with --anchors)",
    "enqueue": "tickwork actor.send, trigger, and the client's publish",
    "drain": "no-op jobs with run records drained by 1 and by 2 worker processes",
    "installs": "no-op install jobs drained; 2 racing enqueuers",
    "latency": "enqueue→start latency on an idle worker",
    "dispatcher": "dispatcher CPU per tick at 100 / 1,000 / 10,000 schedules",
    "cleanup": "batched cleanup of --cleanup-rows expired rows vs one raw DELETE",
}

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
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="parts (--only):\n"
        + "\n".join(f"  {name:<11} {what}" for name, what in PART_HELP.items())
        + "\n\nreferences (--anchors):\n"
        + "\n".join(f"  {name:<14} {a.script}: {a.what}" for name, a in anchors.ANCHORS.items())
        + "\n\nexample: python -m tests.bench --only anchors,drain --rounds 3",
    )
    parser.add_argument("--rounds", type=int, default=3, help="repeat each measurement (≥ 1)")
    parser.add_argument("--messages", type=int, default=5000, help="messages per drain/enqueue")
    parser.add_argument(
        "--threads", type=int, default=8, help="worker threads per process (and peer concurrency)"
    )
    parser.add_argument(
        "--only",
        default="",
        metavar="PARTS",
        help="comma-separated parts to run (default: all of them, listed below)",
    )
    parser.add_argument(
        "--anchors",
        default="",
        metavar="NAMES",
        help="comma-separated references for the anchors part (default: all, listed below)",
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
    chosen = [w.strip() for w in args.anchors.split(",") if w.strip()] or list(anchors.ANCHORS)
    unknown = set(chosen) - set(anchors.ANCHORS)
    if unknown:
        parser.error(
            f"--anchors: unknown reference {sorted(unknown)[0]!r} "
            f"(known: {', '.join(anchors.ANCHORS)})"
        )
    if "anchors" in wanted:
        try:
            anchors.anchor_dir(tuple(anchors.ANCHORS[name].script for name in chosen))
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

    amqp, pg = measures.AMQP_URL, measures.PG_ADMIN_URL
    if "anchors" in wanted:
        for name in chosen:
            anchor = anchors.ANCHORS[name]
            step(
                f"reference: {anchor.what}",
                lambda a=anchor: a.measure(results, n, args.threads, amqp, pg),
            )
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
