"""The README tells the truth: its test command is what CI runs, its table is current."""

import re
from pathlib import Path

from tickwork.settings import settings_table

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = "bash scripts/test.sh"
    assert test_command in _commands()
    assert re.search(rf"^{re.escape(test_command)}$", (REPO / ".ci/run").read_text(), re.M)


def test_readme_run_command_is_the_embedded_mode() -> None:
    assert "pip install -e . && tickwork run" in _commands()


def test_configuration_table_matches_the_settings() -> None:
    start, end = "<!-- settings-table:start -->\n", "\n<!-- settings-table:end -->"
    block = README.split(start)[1].split(end)[0]
    assert block == settings_table(), "run: python -m tickwork.settings --write README.md"
