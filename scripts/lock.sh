#!/usr/bin/env bash
# The lock files: every dependency set pinned with hashes, made by uv from pyproject.toml.
#   bash scripts/lock.sh            refresh after editing pyproject.toml (keeps current pins
#                                   where they still fit; pass --upgrade to move everything)
#   bash scripts/lock.sh --check    fail if pyproject.toml and the lock files disagree (CI)
# requirements/runtime.txt is `pip install tickwork`'s set, test.txt adds the test extra
# (what scripts/test.sh and CI install), bench.txt adds the benchmark peers on top of that.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv.sh

check=0
extra_args=()
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    *) extra_args+=("$arg") ;;
  esac
done

lock() {  # lock NAME [--extra X ...]
  local name=$1; shift
  local out="requirements/$name.txt"
  local target="$out"
  if [ "$check" = 1 ]; then
    target=$(mktemp); cp "$out" "$target"
  fi
  uv pip compile pyproject.toml "$@" ${extra_args[@]+"${extra_args[@]}"} \
    --universal --python-version 3.11 --generate-hashes --quiet \
    --custom-compile-command "bash scripts/lock.sh" -o "$target"
  if [ "$check" = 1 ]; then
    if ! diff -u "$out" "$target"; then
      echo "error: $out is out of date with pyproject.toml; run: bash scripts/lock.sh" >&2
      exit 1
    fi
    rm -f "$target"
  fi
}

lock runtime
lock test --extra test
lock bench --extra test --extra bench
[ "$check" = 1 ] && echo "lock files match pyproject.toml" || echo "lock files written to requirements/"
