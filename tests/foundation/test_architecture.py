"""The shape of the code, held by a test: which package may import which, no import circles,
`mappings/` pure, no module past 400 lines. See docs/ARCHITECTURE.md.

Every import counts: module level, inside functions, and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "mappings", "receiver", "worker", "sandbox", "shopsync")

# Which of our packages each package may import (itself always).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "mappings": frozenset(),
    "receiver": frozenset({"core", "mappings"}),
    "worker": frozenset({"core", "mappings"}),
    "sandbox": frozenset({"core", "mappings"}),
    "shopsync": frozenset({"core", "mappings", "receiver", "worker", "sandbox"}),
}
SIZE_LIMITED = ("core", "receiver", "worker", "mappings", "shopsync")
MAX_LINES = 400
# What pure code may import from outside the standard library: nothing.
PURE_PACKAGES = ("mappings",)
IMPURE_STDLIB = frozenset(
    {"asyncio", "os", "socket", "subprocess", "time", "random", "threading", "io", "pathlib", "shutil"}
)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name (resolved, may be a package or an attribute of one)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports_of(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield Import(name, module, node.lineno)
            for alias in node.names:
                yield Import(name, f"{module}.{alias.name}", node.lineno)


@cache
def _graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (an attribute import resolves to its module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in _imports_of(name, path):
            target = imp.target
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # A package's own __init__ reached through its submodule's import is not an edge.
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def _all_imports() -> Iterator[Import]:
    for name, path in _modules().items():
        yield from _imports_of(name, path)


def test_packages_import_only_downwards() -> None:
    wrong = []
    for imp in _all_imports():
        ours, theirs = imp.importer.split(".")[0], imp.target.split(".")[0]
        if theirs in ALLOWED and theirs != ours and theirs not in ALLOWED[ours]:
            wrong.append(f"{imp.importer}:{imp.line} imports {imp.target}")
    assert not sorted(set(wrong)), "imports against the allowed direction:\n" + "\n".join(sorted(set(wrong)))


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module, or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    components.append(sorted(component))
    return components


def test_no_import_circles() -> None:
    circles = _strongly_connected(_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_finder_finds_circles() -> None:
    # The finder itself, on a made-up graph: a -> b -> c -> a is one circle, d stands alone.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _strongly_connected(graph) == [["a", "b", "c"], ["e"]]


def test_mappings_is_pure() -> None:
    third_party = []
    stdlib = sys.stdlib_module_names
    for imp in _all_imports():
        if imp.importer.split(".")[0] not in PURE_PACKAGES:
            continue
        top = imp.target.split(".")[0]
        if top in PURE_PACKAGES or top == "__future__":
            continue
        if top not in stdlib or top in IMPURE_STDLIB:
            third_party.append(f"{imp.importer}:{imp.line} imports {imp.target}")
    assert not sorted(set(third_party)), "impure imports in mappings:\n" + "\n".join(sorted(set(third_party)))


@pytest.mark.parametrize("package", SIZE_LIMITED)
def test_no_module_past_the_size_limit(package: str) -> None:
    too_long = []
    for path in sorted((ROOT / package).rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not too_long, f"modules over {MAX_LINES} lines:\n" + "\n".join(too_long)


def test_nothing_below_the_command_line_imports_it() -> None:
    # The direction test covers this too; named on its own because it is the rule most easily broken.
    offenders = sorted(
        {
            f"{imp.importer}:{imp.line}"
            for imp in _all_imports()
            if imp.target.split(".")[0] == "shopsync" and not imp.importer.startswith("shopsync")
        }
    )
    assert not offenders, "modules importing shopsync: " + ", ".join(offenders)
