"""Write the README's configuration table from the settings, so it cannot drift.

python scripts/render_settings_table.py          # rewrite the table in README.md
python scripts/render_settings_table.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tickwork.settings import ENV_PREFIX, Settings  # noqa: E402  (after the path above)

README = ROOT / "README.md"
START, END = "<!-- settings-table:start -->\n", "\n<!-- settings-table:end -->"


def settings_table() -> str:
    """The README's configuration table: every setting, its default, what it means."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None or default == "" else f"`{default}`"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def rendered(readme_text: str) -> str:
    """``readme_text`` with the table between the settings-table markers replaced."""
    head, rest = readme_text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + settings_table() + END + tail


def main(argv: list[str]) -> int:
    text = README.read_text()
    if argv[1:2] == ["--check"]:
        if rendered(text) != text:
            print("README.md's settings table is out of date: run", file=sys.stderr)
            print("  python scripts/render_settings_table.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(rendered(text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
