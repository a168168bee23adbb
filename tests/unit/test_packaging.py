"""The wheel users and the container image install carries everything the code reads at
run time: migrations, and the admin page's template and script."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_web_page_and_the_migrations(tmp_path: Path) -> None:
    # Given a wheel built with the locked uv from a copy of this checkout (setuptools
    # writes build/ beside its sources)
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("tickwork", "schema", "producers", "workers", "admin"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "uv", "build", "--wheel", "--out-dir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("tickwork-*.whl")
    # When its files are listed
    names = set(zipfile.ZipFile(wheel).namelist())
    # Then every package and the files read at run time are in it
    for package in ("tickwork", "schema", "producers", "workers", "admin"):
        assert f"{package}/__init__.py" in names, package
    assert "admin/web/templates/index.html" in names
    assert "admin/web/app.js" in names
    assert "schema/migrations/env.py" in names
    assert any(n.startswith("schema/migrations/versions/0001_") for n in names)
