"""The package's layers: every module sits in one, and no module imports itself back through
others (TYPE_CHECKING imports included). import-linter checks the contracts themselves in
``make lint``; these check what its contracts cannot say."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).parents[2]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("macp", cache_dir=None)  # TYPE_CHECKING imports included


def _layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["id"] == "layers"]
    return [[name.strip() for name in layer.replace("|", ":").split(":")] for layer in layers]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The sets of modules that import one another (each through the others), as sorted lists:
    a module is in one when some module both imports it and is imported by it, however
    indirectly."""
    found: set[tuple[str, ...]] = set()
    for module in graph.modules:
        both = graph.find_upstream_modules(module) & graph.find_downstream_modules(module)
        if both:
            found.add(tuple(sorted({module, *both})))
    return sorted(list(cycle) for cycle in found)


def test_no_module_imports_itself_back_through_others() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=importer, imported=imported)
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_every_module_sits_in_a_layer() -> None:
    placed = [name for layer in _layers() for name in layer]
    unplaced = [
        module
        for module in sorted(_graph().modules)
        if not any(module == p or module.startswith(f"{p}.") for p in placed)
        and not any(p.startswith(f"{module}.") for p in placed)  # a package of placed ones
    ]
    assert unplaced == [], "add each to a layer in pyproject.toml's [tool.importlinter]"


def test_each_module_sits_in_one_layer_only() -> None:
    placed = [name for layer in _layers() for name in layer]
    assert len(placed) == len(set(placed))
