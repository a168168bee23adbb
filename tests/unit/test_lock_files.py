"""The lock files agree with pyproject.toml (offline; `bash scripts/lock.sh --check` in CI
also re-resolves): every dependency a set declares is pinned, with a hash, at a version
its specifier allows, so a fresh machine installs what CI tested."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def declared(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def pinned(lock: str) -> dict[str, Version]:
    text = (ROOT / "requirements" / lock).read_text()
    pins: dict[str, Version] = {}
    for block in re.split(r"\n(?=\S)", text):
        match = PIN.match(block)
        if match:
            assert "--hash=sha256:" in block, f"{lock}: {match.group(1)} has no hash"
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("runtime.txt", ()), ("test.txt", ("test",)), ("bench.txt", ("test", "bench"))],
)
def test_every_declared_dependency_is_pinned_within_its_bounds(
    lock: str, extras: tuple[str, ...]
) -> None:
    # Given the lock file of one dependency set
    pins = pinned(lock)
    # When each dependency pyproject.toml declares for that set is looked up
    for requirement in declared(*extras):
        name = canonicalize_name(requirement.name)
        # Then it is pinned at a version its specifier allows
        assert name in pins, f"{lock} lacks {requirement}; run: bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside {requirement}; run: bash scripts/lock.sh"
        )


def test_the_test_command_installs_from_the_lock() -> None:
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert "--require-hashes" in script and "requirements/$set_name.txt" in script
    assert "bash scripts/install.sh test" in (ROOT / "scripts" / "test.sh").read_text()


def test_the_locked_uv_is_the_one_the_scripts_pin() -> None:
    pinned_in_script = re.search(r"^UV_VERSION=(\S+)$", (ROOT / "scripts/uv.sh").read_text(), re.M)
    assert pinned_in_script, "scripts/uv.sh pins uv"
    assert pinned("test.txt")["uv"] == Version(pinned_in_script.group(1))
