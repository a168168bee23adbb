"""The README tells the truth: its test command is what CI runs, its table is current."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = "bash scripts/test.sh"
    assert test_command in _commands()
    assert re.search(rf"^{re.escape(test_command)}$", (REPO / ".ci/run").read_text(), re.M)


def test_readme_run_command_is_the_embedded_mode() -> None:
    quick_start = _commands()[0]
    assert quick_start.startswith("git clone ")
    assert quick_start.rstrip().endswith("pip install -e . && tickwork run")


def test_files_named_in_the_ci_package_list_exist() -> None:
    named = re.findall(r"(?:scripts|\.ci)/[\w./-]+", (REPO / ".ci/apt-packages.txt").read_text())
    assert named, "the package list says who installs it"
    for path in named:
        assert (REPO / path).exists(), f".ci/apt-packages.txt names {path}, which does not exist"


def test_configuration_table_matches_the_settings() -> None:
    checked = subprocess.run(
        [sys.executable, "scripts/render_settings_table.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
