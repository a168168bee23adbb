#!/usr/bin/env bash
# Installs a locked dependency set into ./.venv (created if missing) and tickwork itself
# (editable), exactly as pinned in requirements/NAME.txt: `bash scripts/install.sh test`.
# Every locked package is installed at its pinned version and hash; anything else a user
# added to .venv is left alone (on a fresh machine, .venv is exactly the lock).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv.sh
set_name=${1:-test}
[ -x .venv/bin/python ] || uv venv --quiet --seed --python "$(command -v python3)" .venv
uv pip install --quiet --compile-bytecode --python .venv/bin/python --require-hashes -r "requirements/$set_name.txt"
uv pip install --quiet --python .venv/bin/python --no-deps -e .
# Byte-compile our own code too: tests start many short tickwork processes, and where
# PYTHONDONTWRITEBYTECODE is set each would otherwise recompile every module (~1 s each).
.venv/bin/python -m compileall -q -j 0 tickwork schema producers workers $( [ -d admin ] && echo admin ) >/dev/null
