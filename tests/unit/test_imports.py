"""The package's import graph has no cycles, between subpackages or between modules.

Every ``import minitron...`` counts, at module level or inside a function (a lazy import is
still a dependency). Read from the source with ``ast``; nothing is imported.
"""

import ast
import collections
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "minitron"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """{module: the minitron modules it imports}."""
    mods = _modules()
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for mod, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            graph[mod] |= {n for n in names if n in mods and n != mod and n != "minitron"}
    return graph


def subpackage(mod: str) -> str:
    """minitron.parallel.engine -> parallel; a top-level module is its own unit."""
    return mod.split(".")[1] if mod.count(".") >= 1 else mod


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def _edges_within(graph, comp, unit=lambda m: m):
    return sorted(
        f"{a} -> {b}" for a in graph for b in graph[a] if unit(a) in comp and unit(b) in comp
    )


def test_the_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycle_between_subpackages():
    graph = import_graph()
    packages: dict[str, set[str]] = collections.defaultdict(set)
    for a, targets in graph.items():
        packages[subpackage(a)] |= {subpackage(b) for b in targets} - {subpackage(a)}
    found = cycles(packages)
    detail = [_edges_within(graph, set(c), subpackage) for c in found]
    assert not found, f"subpackage cycles {found}; the imports that close them: {detail}"


def test_no_cycle_between_modules():
    graph = import_graph()
    found = cycles(graph)
    assert not found, f"module cycles {found}: " + str(
        [_edges_within(graph, set(c)) for c in found]
    )


def test_layers_named_in_the_design():
    """parallel/ holds communication only: it never imports the model or checkpoint code;
    config/ imports no domain package (choice lists live in minitron.choices)."""
    graph = import_graph()
    for mod, targets in graph.items():
        unit = subpackage(mod)
        bad = {subpackage(t) for t in targets}
        if unit == "parallel":
            assert not bad & {"models", "checkpoint", "train", "data"}, (mod, targets)
        if unit == "config":
            assert bad <= {"config", "errors", "choices", "formats"}, (mod, targets)
