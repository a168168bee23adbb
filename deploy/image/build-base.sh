#!/usr/bin/env bash
# A local stand-in for the Dockerfile's public base (python:3.11-slim-bookworm), for machines
# that cannot pull from a container registry: Debian bookworm (--variant=minbase) with
# Debian's own Python 3.11 (python3, python3-venv for the build stage's venv), CA
# certificates and netbase, committed with buildah as a local image.
#   bash deploy/image/build-base.sh              build it unless it exists already
#   bash deploy/image/build-base.sh --rebuild    build it again
# Prints the image name. Needs root, debootstrap and buildah (apt-get install debootstrap
# buildah) and Debian's package mirror. Then:
#   bash deploy/image/build.sh    (builds deploy/Dockerfile with BASE_IMAGE=this image)
set -euo pipefail
source "$(dirname "$0")/common.sh"

rebuild=0
[ "${1:-}" = "--rebuild" ] && rebuild=1
if [ "$rebuild" = 0 ] && image_exists "$BASE_IMAGE_LOCAL"; then
  echo "$BASE_IMAGE_LOCAL"
  exit 0
fi
need debootstrap debootstrap
need buildah buildah

rootfs=$(mktemp -d /var/tmp/tickwork-base.XXXXXX)
ctr=""
cleanup() {
  [ -n "$ctr" ] && buildah "${BUILDAH_OPTS[@]}" rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$rootfs"
}
trap cleanup EXIT

echo "--- debootstrap $DEBIAN_SUITE (minbase) into $rootfs" >&2
debootstrap --variant=minbase \
  --include=python3,python3-venv,ca-certificates,netbase \
  "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 \
  || { tail -30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# What the slim images drop too: package caches and lists, docs, man pages.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/log/* "$rootfs"/tmp/*
# `python` as in the public image (the Dockerfile calls python3 only; this is for humans).
ln -sf python3 "$rootfs/usr/bin/python"
"$rootfs/usr/bin/python3" --version >&2 2>/dev/null || chroot "$rootfs" python3 --version >&2

ctr=$(buildah "${BUILDAH_OPTS[@]}" from scratch)
mnt=$(buildah "${BUILDAH_OPTS[@]}" mount "$ctr")
cp -a "$rootfs"/. "$mnt"/
buildah "${BUILDAH_OPTS[@]}" umount "$ctr" >/dev/null
buildah "${BUILDAH_OPTS[@]}" config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --label org.opencontainers.image.title="tickwork local base (Debian $DEBIAN_SUITE minbase + python3)" \
  --label org.opencontainers.image.base.name="debootstrap:$DEBIAN_SUITE" \
  --cmd python3 "$ctr"
buildah "${BUILDAH_OPTS[@]}" commit --quiet --rm "$ctr" "$BASE_IMAGE_LOCAL" >/dev/null
ctr=""
echo "$BASE_IMAGE_LOCAL"
