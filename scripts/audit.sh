#!/usr/bin/env bash
# Known vulnerabilities of the locked runtime dependencies (requirements/runtime.txt):
# pip-audit against its vulnerability service (default PyPI's JSON API; --osv for OSV).
# No install: the lock is fully pinned and hashed (--disable-pip).
#   bash scripts/audit.sh [--osv] [extra pip-audit options, e.g. --ignore-vuln ID]
# Exit 0: every package was audited and none has a known vulnerability. 1: vulnerabilities
# found (listed). 2: the service could not be asked about every package (unreachable, or a
# proxy refusing its URLs): nothing is claimed, because pip-audit itself then says "No known
# vulnerabilities found" while having checked nothing. Not part of .ci/run: from our CI
# machines the service is not reachable (docs/DEPLOY.md, "The image, built").
set -uo pipefail
cd "$(dirname "$0")/.."
service=(--vulnerability-service pypi)
args=()
for arg in "$@"; do
  case "$arg" in
    --osv) service=(--vulnerability-service osv) ;;
    *) args+=("$arg") ;;
  esac
done
report=$(mktemp)
trap 'rm -f "$report"' EXIT
.venv/bin/pip-audit -r requirements/runtime.txt --require-hashes --disable-pip \
  --progress-spinner off --timeout 30 "${service[@]}" ${args[@]+"${args[@]}"} \
  --format json --output "$report" 2>/dev/null
rc=$?
.venv/bin/python - "$report" "$rc" <<'PY'
import json
import sys

path, rc = sys.argv[1], int(sys.argv[2])
try:
    deps = json.load(open(path))["dependencies"]
except (OSError, ValueError, KeyError):
    print(f"error: pip-audit failed (exit {rc}) before writing a report", file=sys.stderr)
    sys.exit(2)
skipped = [d for d in deps if d.get("skip_reason")]
vulnerable = [d for d in deps if d.get("vulns")]
for d in vulnerable:
    for v in d["vulns"]:
        fixed = ", ".join(v.get("fix_versions") or []) or "no fix yet"
        print(f"VULNERABLE {d['name']} {d['version']}: {v['id']} (fixed in: {fixed})")
if skipped:
    print(
        f"error: {len(skipped)} of {len(deps)} locked packages could not be audited: the "
        "vulnerability service did not answer for them (unreachable, or refused by a proxy). "
        f"First: {skipped[0]['skip_reason']}",
        file=sys.stderr,
    )
    sys.exit(2)
if vulnerable:
    sys.exit(1)
print(f"audited {len(deps)} locked packages: no known vulnerabilities")
PY
