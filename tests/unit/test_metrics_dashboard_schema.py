"""The Grafana dashboard type-checked against Grafana's own published Dashboard type.

No Grafana server is packaged here, but Grafana publishes its dashboard schema as the
npm package ``@grafana/schema`` (TypeScript types generated from its CUE schema). The
test installs it and TypeScript from the committed lock file
(``tests/grafana-schema/package-lock.json``, ``npm ci --ignore-scripts``, cached under
``tests/grafana-schema/node_modules`` until the lock changes), writes the dashboard JSON
into a ``.ts`` file as ``const dashboard: DashboardJson = <json>`` and runs ``tsc
--noEmit --strict``: unknown fields, missing required fields, wrong types and values
outside Grafana's enums are errors. ``DashboardJson`` (``json-types.ts``) is Grafana's
``Dashboard`` with each string enum spelled as its values, as JSON holds them.

Missing node/npm skips locally and fails with CI=true.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, REPO_ROOT
from tests.promql import DASHBOARD

SCHEMA_DIR = REPO_ROOT / "tests" / "grafana-schema"
GENERATED = SCHEMA_DIR / ".generated"
TSC_FLAGS = (
    "--noEmit",
    "--strict",
    "--skipLibCheck",  # Grafana's own .d.ts files are not ours to check
    "--module",
    "esnext",
    "--moduleResolution",
    "bundler",
    "--target",
    "es2022",
)


@pytest.fixture(scope="module")
def tsc() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node/npm not found (apt-get install nodejs npm)"
        if IN_CI:
            pytest.fail(f"{message}, and CI=true: the dashboard must be checked", pytrace=False)
        pytest.skip(message)
    lock = SCHEMA_DIR / "package-lock.json"
    stamp = SCHEMA_DIR / "node_modules" / ".tickwork-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not stamp.is_file() or stamp.read_text() != digest:
        result = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=SCHEMA_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
        stamp.write_text(digest)
    return [node, str(SCHEMA_DIR / "node_modules" / "typescript" / "bin" / "tsc")]


def write_check(name: str, board: dict[str, Any]) -> Path:
    GENERATED.mkdir(exist_ok=True)
    path = GENERATED / f"{name}.ts"
    path.write_text(
        'import type { DashboardJson } from "../json-types";\n\n'
        f"export const dashboard: DashboardJson = {json.dumps(board, indent=2)};\n"
    )
    return path


def test_the_dashboard_is_a_grafana_dashboard_by_grafanas_own_types(tsc: list[str]) -> None:
    # Given the committed dashboard, and a copy with three faults Grafana would reject
    # (a field it does not know, a width as text, a thresholds mode it does not have),
    board = json.loads(DASHBOARD.read_text())
    broken = copy.deepcopy(board)
    broken["panels"][0]["titel"] = "typo"
    broken["panels"][1]["gridPos"]["w"] = "6"
    thresholds = {"mode": "absolutely", "steps": [{"color": "green", "value": None}]}
    broken["panels"][2].setdefault("fieldConfig", {"defaults": {}, "overrides": []})
    broken["panels"][2]["fieldConfig"]["defaults"]["thresholds"] = thresholds
    good, bad = write_check("dashboard", board), write_check("broken", broken)
    # when TypeScript checks both against Grafana's Dashboard type (one run),
    result = subprocess.run(
        [*tsc, *TSC_FLAGS, str(good), str(bad)],
        cwd=SCHEMA_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if "error TS" in line]
    # then the committed dashboard has no error,
    assert [e for e in errors if "dashboard.ts" in e] == [], result.stdout
    # and each fault of the broken copy is one (so the check can fail).
    broken_errors = "\n".join(e for e in errors if "broken.ts" in e)
    assert '"titel"' in broken_errors, result.stdout
    assert "Type 'string' is not assignable to type 'number'" in broken_errors, result.stdout
    assert '"absolutely"' in broken_errors, result.stdout
    assert len(errors) == 3, result.stdout + result.stderr
