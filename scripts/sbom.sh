#!/usr/bin/env bash
# The SBOM of what the image and `pip install tickwork` run: requirements/runtime.txt (every
# pinned package with its hashes) as CycloneDX JSON, tickwork as the main component.
# Offline: reads the lock and pyproject.toml only.
#   bash scripts/sbom.sh [OUT]     default dist/sbom/tickwork-<version>.cdx.json
# Needs the test environment (bash scripts/install.sh test: cyclonedx-bom).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)
out=${1:-dist/sbom/tickwork-$version.cdx.json}
mkdir -p "$(dirname "$out")"
PYTHONWARNINGS=ignore::UserWarning .venv/bin/cyclonedx-py requirements requirements/runtime.txt \
  --pyproject pyproject.toml --mc-type application \
  --sv 1.6 --of JSON --output-reproducible --validate -o "$out"
count=$(.venv/bin/python -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["components"]))' "$out")
echo "SBOM: $out ($count components from requirements/runtime.txt)"
