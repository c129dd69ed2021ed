"""The layout of the package: module names, import circles inside a folder, function
length (issue 33's checks, read from the source with :mod:`ast`; nothing is imported)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "dlsa"
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a folder is its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every dotted name module ``name`` imports, anywhere in it (module level, inside
    functions, under ``if TYPE_CHECKING``), and ``package.attribute`` for each name of a
    ``from package import attribute`` (the attribute may be a submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _folder_graphs() -> dict[str, dict[str, set[str]]]:
    """For each folder (package): its children (modules and subpackages) -> the children
    they import, a subpackage standing for every module inside it."""
    modules = _modules()
    folders: dict[str, set[str]] = {}
    for name in modules:
        parent = name.rpartition(".")[0]
        if parent:
            folders.setdefault(parent, set()).add(name)
    graphs = {}
    for folder, children in folders.items():

        def child_of(target: str, children: set[str] = children) -> str | None:
            return next((c for c in children if target == c or target.startswith(c + ".")), None)

        graph: dict[str, set[str]] = {child: set() for child in children}
        for name, path in modules.items():
            source = child_of(name)
            if source is None:
                continue
            for target in _imported(name, path):
                dest = child_of(target) if target in modules else None
                if dest is not None and dest != source:
                    graph[source].add(dest)
        graphs[folder] = graph
    return graphs


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of nodes, the first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_product_module_named_like_a_test():
    # pytest's default python_files: test_*.py and *_test.py
    leaves = {name: name.rpartition(".")[2] for name in _modules()}
    named = [n for n, leaf in leaves.items() if leaf.startswith("test_") or leaf.endswith("_test")]
    assert not named, f"modules of dlsa named test_* or *_test (pytest collects them): {named}"


def test_no_import_circle_inside_a_folder():
    circles = {folder: _cycle(graph) for folder, graph in _folder_graphs().items()}
    found = [" -> ".join(c) for c in circles.values() if c is not None]
    assert not found, "import circles inside a folder (TYPE_CHECKING included):\n" + "\n".join(
        found
    )


def test_the_circle_check_sees_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_over_80_lines():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({path.name}:{node.lineno}): {lines} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
