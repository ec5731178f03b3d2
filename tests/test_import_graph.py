"""The import graph of the ``monitor`` package has no cycle, read statically.

Every module of the package is parsed (``ast``, nothing is imported) and every
``import``/``from ... import`` in it counts, at module level or inside a function, except
those under ``if TYPE_CHECKING:`` (they never run: a type-only reference is how a lower
module names a higher one's type without depending on it). A strongly connected
component of more than one module is a cycle; the test prints one cycle through it.

``ALLOWED`` holds the knots being untangled elsewhere, each as the exact set of modules
in it today: a knot that grows, a new knot, or an allowed knot that is gone or smaller
(then its entry must be tightened) fails.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import monitor

PACKAGE = Path(monitor.__file__).resolve().parent

#: Knots of modules whose cycles are being removed in other changes: reason -> modules.
ALLOWED: dict[str, frozenset[str]] = {}


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _compiled(package: Path) -> set[str]:
    """Dotted names of the package's compiled modules (one C source each, such as
    ``monitor/_native.c``): modules that import nothing of the package."""
    return {
        ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for path in package.rglob("*.c")
    }


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree`` at any depth, less ``if TYPE_CHECKING:`` bodies
    (their ``else:`` branch runs, so it counts)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _owner(name: str, modules: Collection[str]) -> str | None:
    """The module of the package that ``name`` (a module or a name in one) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in it, see the docstring)."""
    modules = _modules(package)
    known = modules.keys() | _compiled(package)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # ``from a.b import c``: the module a.b.c when c is one, else a.b.
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                owner = _owner(target, known)
                if owner is not None and owner != name:
                    graph[name].add(owner)
    return graph


def components(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    members.add(top)
                    if top == node:
                        break
                if len(members) > 1:
                    found.append(frozenset(members))
    return found


def a_cycle(graph: dict[str, set[str]], members: frozenset[str]) -> list[str]:
    """One shortest cycle through the first module of ``members``, as a path back to it."""
    start = min(members)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError(f"{sorted(members)} is not strongly connected")


def _describe(graph: dict[str, set[str]], members: frozenset[str]) -> str:
    return f"{' -> '.join(a_cycle(graph, members))} (knot: {', '.join(sorted(members))})"


def test_the_package_has_no_import_cycle_outside_the_allow_list() -> None:
    graph = import_graph()
    allowed = set(ALLOWED.values())
    found = [c for c in components(graph) if c not in allowed]
    for knot in found:
        print("import cycle:", _describe(graph, knot))
    assert not found, "import cycles:\n" + "\n".join(_describe(graph, c) for c in found)


def test_every_allowed_knot_still_exists_as_listed() -> None:
    """An entry of ``ALLOWED`` whose cycle was removed (or shrank) must be tightened."""
    present = set(components(import_graph()))
    stale = {reason: sorted(knot) for reason, knot in ALLOWED.items() if knot not in present}
    assert not stale, f"tighten ALLOWED in {__file__}: these knots changed or are gone: {stale}"


def test_the_graph_sees_function_level_imports_and_skips_type_checking_ones(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg import c\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
        "else:\n    from . import d\n"
    )
    (pkg / "d.py").write_text("import pkg.sub.b\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.d"}
    assert components(graph) == [frozenset({"pkg.sub.b", "pkg.c", "pkg.d"})]
    assert a_cycle(graph, components(graph)[0]) == ["pkg.c", "pkg.d", "pkg.sub.b", "pkg.c"]
