# Sourced by the scripts: the pinned uv (installed with pip once, run as `python3 -m uv` so
# no PATH or pyenv shim is needed), so the lock files are made and installed by the same
# tool and version everywhere.
UV_VERSION=0.13.9
if [ "$(python3 -m uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m pip install -q --disable-pip-version-check "uv==$UV_VERSION" >&2
fi
uv() { python3 -m uv "$@"; }
