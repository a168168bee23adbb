"""The top-level packages are ours, not same-named packages from PyPI."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_schema_resolves_to_ours() -> None:
    import schema

    assert Path(schema.__file__).resolve().parent == REPO / "schema"
    assert hasattr(schema, "JobRun")


def test_schema_never_imports_workers_or_producers() -> None:
    for path in (REPO / "schema").rglob("*.py"):
        text = path.read_text()
        assert "from workers" not in text and "import workers" not in text, path
        assert "from producers" not in text and "import producers" not in text, path
