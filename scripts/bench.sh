#!/usr/bin/env bash
# The benchmark suite (issue 10): installs the locked benchmark set (requirements/bench.txt:
# the test set plus the reference systems it runs beside tickwork — Celery, procrastinate,
# pgqueuer; Dramatiq and pika are tickwork's own) into .venv, then runs
# `python -m tests.bench` against the real RabbitMQ and PostgreSQL on 127.0.0.1.
# It needs the reference scripts of ../shared/bench beside the checkout (or
# TICKWORK_BENCH_ANCHORS=folder); without them it says so and exits 2.
# Arguments go to the suite, e.g. `bash scripts/bench.sh --rounds 5 --only drain`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh bench
exec .venv/bin/python -m tests.bench "$@"
