"""The house's rules, checked on the source: no import cycles in ``stream/`` or
``models/`` (lazy imports inside functions count: they are cycles waiting for a
refactor), the app module at the bottom imports nothing of the project's, and the
development tools (``stream/dev/``) are reached only from the command line's root."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stream", "models")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every module name an import statement in ``path`` names (with ``from x import y``
    counted as ``x`` and ``x.y``, since ``y`` may be a module)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(n.name for n in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{n.name}" for n in node.names)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        edges = set()
        for target in _imports(path, mod):
            while target and target not in files:
                target = target.rpartition(".")[0]
            # A module importing its own package (or itself) is not an edge.
            if target and target != mod and not mod.startswith(target + "."):
                edges.add(target)
        graph[mod] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_there_is_no_import_cycle_in_stream_or_models():
    assert cycles(import_graph()) == []


def test_only_the_command_line_root_imports_the_development_tools():
    # stream/dev/ (local broker, demo, simulator feed) is not part of a deployment: a
    # service importing it would carry it into production.
    users = {mod for mod, edges in import_graph().items()
             if any(e == "stream.dev" or e.startswith("stream.dev.") for e in edges)
             and not (mod == "stream.dev" or mod.startswith("stream.dev."))}
    assert users == {"stream.cli"}


def test_a_cycle_would_be_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("bottom", ["stream.app"])
def test_the_app_module_at_the_bottom_imports_nothing_of_the_projects(bottom):
    path = ROOT / (bottom.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    checked = [n for n in tree.body if not (isinstance(n, ast.If)
                                            and getattr(n.test, "id", "") == "TYPE_CHECKING")]
    names = {t for n in checked for sub in ast.walk(n) for t in _names(sub)}
    assert not {t for t in names if t.split(".")[0] in PACKAGES}


def _names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [n.name for n in node.names]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return []


LONG_LINES = 80
LONG_REASON = "Long on purpose:"


def long_functions() -> list[str]:
    """Functions in stream/ and models/ over LONG_LINES lines whose docstring does not
    say why (a paragraph starting with LONG_REASON)."""
    out = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                lines = node.end_lineno - node.lineno + 1
                if lines > LONG_LINES and LONG_REASON not in (ast.get_docstring(node) or ""):
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return sorted(out)


def test_no_production_function_is_long_without_a_reason_in_its_docstring():
    assert long_functions() == []
