"""The house's shape, checked: no import cycle among our modules, small files, a thin top level.

The layer contracts themselves (what may import what) are import-linter's, in pyproject.toml,
run by `.ci/run`; these are the rules it does not express."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "messages", "storage")
MAX_LINES = 450
# Top-level bot/ is wiring only: app, cli, config, runtime, services, errors, ids, __main__.
MAX_TOP_LEVEL = 8


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def import_graph() -> dict[str, set[str]]:
    """Every import between our modules, including those inside functions."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    return {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported.split(".")[0] in PACKAGES
        }
        for module in graph.modules
        if module.split(".")[0] in PACKAGES
    }


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back_through_others() -> None:
    assert _cycles(import_graph()) == []


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_is_two_things(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_top_level_bot_holds_only_the_wiring() -> None:
    modules = sorted(p.name for p in (ROOT / "bot").glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= MAX_TOP_LEVEL, modules


def test_messages_never_hold_a_slack_client() -> None:
    """Block Kit models from slack_sdk are rendering; its Web API client is not."""
    for path in (ROOT / "messages").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("slack_sdk.web", "slack_bolt")), path
                assert "WebClient" not in {alias.name for alias in node.names}, path
