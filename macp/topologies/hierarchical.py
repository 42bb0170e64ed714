"""Hierarchical: a tree ``root -> leads -> workers``; each hub decomposes its task among its
children (each instance of each child agent, in turn) and merges their results back up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.errors import ConfigError
from macp.topologies._common import Wiring, agent_class, declared, task_type
from macp.topologies.roles import SUBMIT, Hub

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.topologies.spec import Hierarchical, TopologySpec

__all__ = ["check", "entry", "wiring"]


def _shape(spec: TopologySpec) -> Hierarchical:
    return spec.topology  # type: ignore[return-value]


def _cycle(tree: dict[str, list[str]], root: str) -> list[str]:
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        path.append(node)
        for child in tree.get(node, []):
            if found := visit(child):
                return found
        path.pop()
        return []

    found = visit(root)
    if found:
        return found
    for node in tree:  # a cycle away from the root
        path.clear()
        if found := visit(node):
            return found
    return []


def check(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> None:
    shape = _shape(spec)
    names: list[tuple[tuple[Any, ...], str]] = [(("topology", "root"), shape.root)]
    for parent, children in shape.tree.items():
        names.append((("topology", "tree", parent), parent))
        names += [(("topology", "tree", parent, i), c) for i, c in enumerate(children)]
    if not declared(spec, add, names):
        return
    cycle = _cycle(shape.tree, shape.root)
    if cycle:
        add(("topology", "tree", cycle[0]), f"the hierarchy has a cycle: {' -> '.join(cycle)}")
        return
    _check_tree(spec, shape, add)


def _check_tree(
    spec: TopologySpec, shape: Hierarchical, add: Callable[[tuple[Any, ...], str], None]
) -> None:
    parents: dict[str, str] = {}
    for parent, children in shape.tree.items():
        for child in children:
            if child in parents:
                add(
                    ("topology", "tree", parent),
                    f"{child!r} has two leads: {parents[child]!r} and {parent!r}",
                )
            parents[child] = parent
    if shape.root not in shape.tree:
        add(("topology", "root"), f"the root {shape.root!r} has no children in the tree")
    for parent in shape.tree:
        if parent != shape.root and parent not in parents:
            add(
                ("topology", "tree", parent),
                f"{parent!r} is not reachable from the root {shape.root!r}",
            )
        if not issubclass(agent_class(spec, parent), Hub):
            add(
                ("topology", "tree", parent),
                f"agent {parent!r} leads others, so it must be a macp.Hub subclass",
            )
    _check_workers(spec, shape, parents, add)


def _check_workers(
    spec: TopologySpec,
    shape: Hierarchical,
    parents: dict[str, str],
    add: Callable[[tuple[Any, ...], str], None],
) -> None:
    for child, parent in parents.items():
        if child not in shape.tree:
            try:
                task_type(spec, child)
            except ConfigError as e:
                add(("topology", "tree", parent), e.message)


def wiring(spec: TopologySpec) -> dict[str, Wiring]:
    shape = _shape(spec)
    wired: dict[str, Wiring] = {}
    for parent, children in shape.tree.items():
        members = [
            {"type": SUBMIT if child in shape.tree else task_type(spec, child), "agent": address}
            for child in children
            for address in spec.addresses(child)
        ]
        wired[parent] = Wiring(config={"children": members})
    wired[shape.root].capabilities.append(f"root:{shape.root}")
    return wired


def entry(spec: TopologySpec) -> dict[str, Any]:
    return {"type": SUBMIT, "capabilities": [f"root:{_shape(spec).root}"]}
