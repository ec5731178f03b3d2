"""The metric modules import each other in one direction only.

``compute_metrics`` needs the label-free estimates, the estimates need the calibration
maps, and the baseline (which fits those maps) needs ``compute_metrics`` for the reference
metrics: the shared calibration pieces live in :mod:`monitor.core.calibration`, below all
of them, so no import has to hide inside a function to dodge a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "monitor" / "core"
#: The modules that compute a window's signals from its sums, and what they share.
METRIC_MODULES = ("baseline", "calibration", "drift", "estimate", "metrics", "panemetrics")


def _imports(module: str) -> set[str]:
    """``monitor.core`` modules that ``module`` imports anywhere in its source (at the top,
    inside functions or under ``TYPE_CHECKING``)."""
    tree = ast.parse((CORE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
            if node.module == "monitor.core":
                names = [f"monitor.core.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("monitor.core."):
                found.add(name.split(".")[2])
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_cycle_finder_reports_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_scanner_sees_imports_anywhere_in_a_module() -> None:
    assert "metrics" in _imports("baseline")
    assert "calibration" in _imports("estimate")


@pytest.mark.parametrize("module", METRIC_MODULES)
def test_every_metric_module_exists(module: str) -> None:
    assert (CORE / f"{module}.py").is_file()


def test_metric_modules_import_each_other_without_a_cycle() -> None:
    graph = {m: _imports(m) & set(METRIC_MODULES) for m in METRIC_MODULES}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_the_estimates_do_not_reach_the_baseline() -> None:
    graph = {m: _imports(m) & set(METRIC_MODULES) for m in METRIC_MODULES}
    reached: set[str] = set()
    todo = ["estimate"]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    assert "baseline" not in reached
