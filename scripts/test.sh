#!/usr/bin/env bash
# The test command from the README: installs everything the suite needs, exactly as locked
# in requirements/test.txt, into ./.venv, then runs pytest there.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages some tests drive for real (promtool, chromium, kubectl, ...).
packages=$(sed 's/#.*//' .ci/apt-packages.txt | xargs)
missing=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# kubectl (with kustomize built in) renders deploy/k8s in the tests. This machine's image
# ships a recent one; where it is missing, Debian's kubernetes-client is the fallback.
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
# node + npm type-check the Grafana dashboard against @grafana/schema
# (tests/unit/test_metrics_dashboard_schema.py). This image's nodejs (NodeSource) ships
# npm; on plain Debian they are two packages.
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "warning: missing Debian packages:$missing (run as root or install them)" >&2
  fi
fi

bash scripts/install.sh test
# The CumulusCI backend's own interpreter (cumulusci needs sqlalchemy<2): .venv-cumulusci,
# exactly as requirements/cumulusci.txt; skipped when it already matches the lock.
bash scripts/install_cumulusci.sh
export PATH="$PWD/.venv/bin:$PATH"
# Test files are spread over processes (pytest-xdist, one file per process at a time, so a
# file's shared servers start once): most tests wait on real processes and services, not
# on the CPU. TEST_PROCESSES=0 (or a later `-n 0`) runs them in this process (pdb, -s).
exec .venv/bin/python -m pytest -n "${TEST_PROCESSES:-4}" --dist loadfile "$@"
