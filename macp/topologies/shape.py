"""A topology's shape as data, recorded in the cluster for whoever draws it (the gateway's
dashboard): its nodes, each declared agent's instances, and the edges the topology's kind draws
between declared agents (hub to spokes, each stage to the next, each lead to its children).

The head records it when it starts its control plane (:func:`record`), in the memory store
under namespace :data:`NAMESPACE`, key :data:`KEY`; any gateway of the cluster reads it there.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Final

from macp.actors.memory import MEMORY_PUT
from macp.topologies import builders
from macp.topologies.spec import AssemblyLine, Hierarchical, HubAndSpoke

if TYPE_CHECKING:
    from macp.node import Node
    from macp.topologies.spec import TopologySpec
    from macp.wire import Wire

__all__ = ["KEY", "NAMESPACE", "record", "shape_of"]

NAMESPACE: Final = "macp.topology"
"""The memory store's namespace of the shape."""
KEY: Final = "shape"
"""Its key there."""


def shape_of(spec: TopologySpec) -> dict[str, Any]:
    """``{name, kind, nodes, head, agents: {declared name: {role, group, instances:
    [address...]}}, edges: [[from, to]...]}``, the agents the topology runs itself (an
    assembly line's ``line``) among the agents; ``kind`` ``None`` for a file with no
    ``topology:`` (then no edges)."""
    head = spec.head.name
    agents = {
        a.name: {
            "role": a.role, "group": a.group,
            "instances": [f"{inst}@{node}" for inst, node in a.instances(head)],
        }
        for a in spec.agents
    }  # fmt: skip
    for extra in builders.extras(spec):  # what the topology runs itself (an assembly's line)
        agents[extra.name] = {"role": None, "group": None,
                              "instances": [f"{extra.name}@{extra.node}"]}  # fmt: skip
    return {
        "name": spec.name,
        "kind": None if spec.topology is None else spec.topology.kind,
        "nodes": [n.name for n in spec.nodes],
        "head": head,
        "agents": agents,
        "edges": _edges(spec),
    }


def _edges(spec: TopologySpec) -> list[list[str]]:
    shape = spec.topology
    if isinstance(shape, HubAndSpoke):
        return [[shape.hub, spoke] for spoke in shape.spokes]
    if isinstance(shape, AssemblyLine):
        names = [s if isinstance(s, str) else s.agent for s in shape.stages]
        return [[a, b] for a, b in itertools.pairwise(names)]
    if isinstance(shape, Hierarchical):
        return [[lead, child] for lead, children in shape.tree.items() for child in children]
    return []  # peers find each other at run time: no edge is declared


def record(node: Node, spec: TopologySpec, timeout_s: float = 10.0) -> None:
    """Store ``spec``'s shape in the memory store of the control plane ``node`` runs."""
    body: Wire = {"namespace": NAMESPACE, "key": KEY, "value": shape_of(spec)}
    node.ask("memory", MEMORY_PUT, body).get(timeout_s)
