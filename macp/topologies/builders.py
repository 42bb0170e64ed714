"""The builder module of each topology kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.topologies import assembly_line, hierarchical, hub_and_spoke, peer_to_peer

if TYPE_CHECKING:
    from types import ModuleType

    from macp.topologies._common import Extra, Wiring
    from macp.topologies.spec import TopologySpec

__all__ = ["entry", "extras", "module", "wiring"]

_MODULES: dict[str, ModuleType] = {
    "hub-and-spoke": hub_and_spoke, "peer-to-peer": peer_to_peer,
    "assembly-line": assembly_line, "hierarchical": hierarchical,
}  # fmt: skip


def module(spec: TopologySpec) -> Any:
    assert spec.topology is not None
    return _MODULES[spec.topology.kind]


def wiring(spec: TopologySpec) -> dict[str, Wiring]:
    return module(spec).wiring(spec) if spec.topology is not None else {}


def extras(spec: TopologySpec) -> list[Extra]:
    if spec.topology is None or not hasattr(module(spec), "extras"):
        return []
    found: list[Extra] = module(spec).extras(spec)
    return found


def entry(spec: TopologySpec) -> dict[str, Any] | None:
    """The task fields (type, routing) that submit a task to this topology."""
    return module(spec).entry(spec) if spec.topology is not None else None
