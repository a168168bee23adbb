# Sourced by deploy/image/*.sh: names and the buildah/podman options every script shares.
# vfs storage and chroot isolation work without a Docker daemon, overlay support or
# user namespaces (as root in a plain VM or container).
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
IMAGE_NAME=${IMAGE_NAME:-localhost/tickwork}
BASE_IMAGE_LOCAL=${BASE_IMAGE_LOCAL:-localhost/tickwork-base:bookworm-py311}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
BUILDAH_OPTS=(--storage-driver "$STORAGE_DRIVER")
PODMAN_OPTS=(--storage-driver "$STORAGE_DRIVER")

need() {  # need COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "error: $1 not found; install it: apt-get install $2" >&2
  exit 1
}
image_exists() { buildah "${BUILDAH_OPTS[@]}" inspect --type image "$1" >/dev/null 2>&1; }
project_version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1
}
# podman: see containers.conf beside this file (ulimits, runc).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/image/containers.conf}
