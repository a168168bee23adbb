#!/usr/bin/env bash
# Build the container image and run it (pytest --image tests/acceptance/test_image.py),
# installing the Debian packages it needs first when run as root. .ci/run calls it after
# the README's test command (which made .venv).
#   bash deploy/image/test.sh [extra pytest options]
set -euo pipefail
cd "$(dirname "$0")/../.."
packages="buildah podman runc crun debootstrap"
missing=""
for p in $packages; do
  # installed, not merely known to dpkg (a removed package keeps "deinstall ... config-files")
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: missing Debian packages:$missing (run as root or install them)" >&2
    exit 1
  fi
  echo "installing Debian packages:$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider --image tests/acceptance/test_image.py "$@"
