"""Peer-to-peer: a submitted task goes to a peer that handles its type; a peer asks for help
with ``Peer.request_assistance``, which the head's sessions actor turns into a coordinator task
for the least loaded other peer with the capabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.topologies._common import Wiring, agent_class, declared

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.topologies.spec import PeerToPeer, TopologySpec

__all__ = ["check", "entry", "wiring"]


def _shape(spec: TopologySpec) -> PeerToPeer:
    return spec.topology  # type: ignore[return-value]


def check(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> None:
    shape = _shape(spec)
    if not declared(spec, add, [(("topology", "peers", i), p) for i, p in enumerate(shape.peers)]):
        return
    if len(shape.peers) < 2:  # noqa: PLR2004
        add(("topology", "peers"), "peer-to-peer needs at least two peers")
    if not any(shape.entry in agent_class(spec, p)._handlers for p in shape.peers):
        add(("topology", "entry"), f"no peer handles {shape.entry!r}; name a type a peer handles")


def wiring(spec: TopologySpec) -> dict[str, Wiring]:
    return {p: Wiring(capabilities=["peer"]) for p in _shape(spec).peers}


def entry(spec: TopologySpec) -> dict[str, Any]:
    return {"type": _shape(spec).entry}
