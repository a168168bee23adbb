#!/usr/bin/env bash
# Builds deploy/Dockerfile with buildah, without a Docker daemon:
#   bash deploy/image/build.sh                  on the local Debian base (made once by
#                                               build-base.sh, reused after)
#   BASE_IMAGE=python:3.11-slim-bookworm bash deploy/image/build.sh
#                                               on the public base (needs a registry)
# Tags $IMAGE_NAME:<version from pyproject.toml> (default localhost/tickwork:0.1.0). The
# host's CA bundle goes in as the build secret "ca_bundle" (for pip behind an inspecting
# proxy; never stored in the image), proxy variables as build arguments. Last line printed:
#   image=NAME size_bytes=N build_s=S base=BASE
set -euo pipefail
source "$(dirname "$0")/common.sh"
need buildah buildah

version=$(project_version)
tag="$IMAGE_NAME:$version"
base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  base=$(bash deploy/image/build-base.sh | tail -1)
fi

# The CA bundle pip should trust: what the host's own Python tools are told to use.
ca_bundle=""
for f in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" \
         /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$f" ] && [ -s "$f" ]; then ca_bundle=$f; break; fi
done
args=(--build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version")
[ -n "$ca_bundle" ] && args+=(--secret "id=ca_bundle,src=$ca_bundle")
for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  [ -n "${!v:-}" ] && args+=(--build-arg "$v=${!v}")
done

previous=$(buildah "${BUILDAH_OPTS[@]}" inspect --type image --format '{{.FromImageID}}' "$tag" 2>/dev/null || true)
echo "--- buildah bud $tag (base $base)" >&2
start=$(date +%s.%N)
# --layers=false: one layer per stage result, nothing of stage 1 cached in storage.
buildah "${BUILDAH_OPTS[@]}" bud --isolation chroot --layers=false --pull-never \
  -f deploy/Dockerfile -t "$tag" "${args[@]}" . >&2
end=$(date +%s.%N)
# The image this tag named before, now untagged (vfs keeps a full copy of each): removed.
if [ -n "$previous" ]; then
  buildah "${BUILDAH_OPTS[@]}" rmi "$previous" >/dev/null 2>&1 || true
fi
build_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
size=$(buildah "${BUILDAH_OPTS[@]}" images --format '{{.Size}}' "$tag" | head -1)
size_bytes=unknown
if command -v podman >/dev/null 2>&1; then
  size_bytes=$(podman "${PODMAN_OPTS[@]}" image inspect --format '{{.Size}}' "$tag")
fi
echo "built $tag: $size ($size_bytes bytes) in ${build_s}s" >&2
echo "image=$tag size_bytes=$size_bytes build_s=$build_s base=$base"
