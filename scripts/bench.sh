#!/usr/bin/env bash
# The benchmark suite (issue 10): installs the reference systems it runs beside tickwork
# (Celery; Dramatiq and pika are tickwork's own dependencies), then runs
# `python -m tests.bench` against the real RabbitMQ and PostgreSQL on 127.0.0.1.
# Arguments go to the suite, e.g. `bash scripts/bench.sh --rounds 5 --only drain`.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test,bench]'
exec python -m tests.bench "$@"
