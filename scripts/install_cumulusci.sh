#!/usr/bin/env bash
# The CumulusCI environment of the cumulusci org backend: ./.venv-cumulusci, exactly as
# pinned (with hashes) in requirements/cumulusci.txt. CumulusCI cannot live in tickwork's
# own venv (it needs sqlalchemy<2), so the backend drives it in this interpreter.
#   bash scripts/install_cumulusci.sh           create or update it (skipped when it
#                                               already matches the lock: a stamp file
#                                               holds the lock's hash)
#   bash scripts/install_cumulusci.sh --lock    re-lock requirements/cumulusci.in
#   bash scripts/install_cumulusci.sh --check   fail if the lock is out of date with the .in
# TICKWORK_CUMULUSCI_VENV overrides the directory (TICKWORK_CUMULUSCI_PYTHON then is
# <dir>/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv.sh
venv=${TICKWORK_CUMULUSCI_VENV:-.venv-cumulusci}
lock_args=(--universal --python-version 3.11 --generate-hashes --quiet
  --custom-compile-command "bash scripts/install_cumulusci.sh --lock")

case "${1:-}" in
  --lock)
    uv pip compile requirements/cumulusci.in "${lock_args[@]}" -o requirements/cumulusci.txt
    echo "requirements/cumulusci.txt written"; exit 0 ;;
  --check)
    tmp=$(mktemp); cp requirements/cumulusci.txt "$tmp"
    uv pip compile requirements/cumulusci.in "${lock_args[@]}" -o "$tmp"
    if ! diff -u requirements/cumulusci.txt "$tmp"; then
      echo "error: requirements/cumulusci.txt is out of date; run: bash scripts/install_cumulusci.sh --lock" >&2
      rm -f "$tmp"; exit 1
    fi
    rm -f "$tmp"; echo "requirements/cumulusci.txt matches requirements/cumulusci.in"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--lock|--check]" >&2; exit 2 ;;
esac

# The stamp covers the lock and this script: either changing re-runs the install.
want=$(cat requirements/cumulusci.txt "$0" | sha256sum | cut -d' ' -f1)
stamp="$venv/.tickwork-lock-sha256"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0  # already exactly the lock
fi
# CumulusCI supports Python >=3.11,<3.14; python3 here is 3.11.
[ -x "$venv/bin/python" ] || uv venv --quiet --python "$(command -v python3)" "$venv"
# Byte-compiled now: the backend starts a runner per step, and where PYTHONDONTWRITEBYTECODE
# is set each start would otherwise recompile CumulusCI's imports.
uv pip install --quiet --compile-bytecode --python "$venv/bin/python" --require-hashes \
  -r requirements/cumulusci.txt
"$venv/bin/python" -c "import cumulusci; print('cumulusci', cumulusci.__version__, 'in', '$venv')"
echo "$want" > "$stamp"
