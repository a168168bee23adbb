"""The layout holds: imports only go down the layers, no module imports itself back in a
circle, function-local imports say why, and the top-level names resolve to ours.

    admin  →  producers | workers  →  schema  →  tickwork

``producers`` (what sends work) and ``workers`` (what consumes it) are siblings: neither
imports the other; both share the vocabulary in ``tickwork`` and the models in ``schema``.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"tickwork": 0, "schema": 1, "producers": 2, "workers": 2, "admin": 3}


@dataclass(frozen=True)
class Import:
    source: str  # module that imports, e.g. "workers.app"
    target: str  # module imported, e.g. "schema.engine"
    path: Path
    line: int
    in_function: bool
    type_checking: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports() -> Iterator[Import]:
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            source = module_name(path)
            tree = ast.parse(path.read_text(), str(path))
            yield from _walk(tree, source, path, in_function=False, type_checking=False)


def _walk(
    node: ast.AST, source: str, path: Path, *, in_function: bool, type_checking: bool
) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        function = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        guarded = type_checking or (
            isinstance(child, ast.If) and ast.unparse(child.test).endswith("TYPE_CHECKING")
        )
        targets: list[str] = []
        if isinstance(child, ast.Import):
            targets = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
            targets = [child.module]
            # `from tickwork import queues` imports the module tickwork.queues
            targets += [
                f"{child.module}.{alias.name}"
                for alias in child.names
                if (ROOT / Path(*child.module.split("."), alias.name)).with_suffix(".py").exists()
                or (ROOT / Path(*child.module.split("."), alias.name, "__init__.py")).exists()
            ]
        for target in targets:
            if target.split(".")[0] in LAYERS:
                yield Import(source, target, path, child.lineno, function, guarded)
        yield from _walk(child, source, path, in_function=function, type_checking=guarded)


def test_imports_only_go_down_the_layers() -> None:
    # Given every import between tickwork's own packages
    wrong = []
    for imp in internal_imports():
        src, dst = imp.source.split(".")[0], imp.target.split(".")[0]
        # Then each goes to a lower layer or stays inside its own package
        if src != dst and LAYERS[dst] >= LAYERS[src]:
            wrong.append(f"{imp.path.relative_to(ROOT)}:{imp.line}: {src} → {imp.target}")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(wrong)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    # Given the module graph, function-local imports included (they are still arrows);
    # a package's __init__ importing its own modules is how packages are made, not a circle
    edges: dict[str, set[str]] = {}
    for imp in internal_imports():
        if imp.type_checking:
            continue
        target = imp.target
        if imp.source == target or (
            target.startswith(imp.source + ".") and imp.path.name == ("__init__.py")
        ):
            continue
        edges.setdefault(imp.source, set()).add(target)
    # Then no set of modules imports itself back
    assert _cycles(edges) == []


LAZY_POLICY = "Imports inside commands:"  # a module docstring line that gives the reason


def function_local_imports() -> list[Import]:
    return [imp for imp in internal_imports() if imp.in_function]


def test_function_local_imports_say_why() -> None:
    # Given every function-local import of tickwork's own modules
    lines_of: dict[Path, list[str]] = {}
    silent = []
    for imp in function_local_imports():
        text = imp.path.read_text()
        lines = lines_of.setdefault(imp.path, text.splitlines())
        here, above = lines[imp.line - 1], lines[imp.line - 2]
        docstring = ast.get_docstring(ast.parse(text)) or ""
        # Then a comment on the line or just above says why it is not at the top, or the
        # module's docstring states the reason for all of them (the CLI's commands)
        if "#" not in here and not above.strip().startswith("#") and LAZY_POLICY not in docstring:
            silent.append(f"{imp.path.relative_to(ROOT)}:{imp.line}: {here.strip()}")
    assert not silent, "function-local imports without a reason:\n" + "\n".join(silent)


def test_only_the_cli_defers_imports_wholesale() -> None:
    # The module-wide reason is for the CLI, where it halves start-up; nowhere else.
    policy_modules = {
        imp.source
        for imp in function_local_imports()
        if LAZY_POLICY in (ast.get_docstring(ast.parse(imp.path.read_text())) or "")
    }
    assert all(name.startswith("admin.cli") for name in policy_modules), policy_modules


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_top_level_names_resolve_to_this_project(package: str) -> None:
    # The packages install under short top-level names (`schema`, `workers`, ...): a
    # same-named package installed before ours would shadow it; this fails if one does.
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().is_relative_to(ROOT), module.__file__
