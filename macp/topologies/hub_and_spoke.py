"""Hub-and-spoke: the hub decomposes each submitted task, spokes work on the parts (chosen by
capability, least loaded first), the hub merges the results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.errors import ConfigError
from macp.topologies._common import Wiring, agent_class, declared, task_type
from macp.topologies.roles import SUBMIT, Hub

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.topologies.spec import HubAndSpoke, TopologySpec

__all__ = ["check", "entry", "wiring"]


def _shape(spec: TopologySpec) -> HubAndSpoke:
    return spec.topology  # type: ignore[return-value]


def check(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> None:
    shape = _shape(spec)
    names: list[tuple[tuple[Any, ...], str]] = [(("topology", "hub"), shape.hub)]
    names += [(("topology", "spokes", i), s) for i, s in enumerate(shape.spokes)]
    if not declared(spec, add, names):
        return
    if not shape.spokes:
        add(("topology", "spokes"), "a hub needs at least one spoke")
    if not issubclass(agent_class(spec, shape.hub), Hub):
        add(
            ("topology", "hub"),
            f"agent {shape.hub!r} must be a macp.Hub subclass (decompose/merge)",
        )
    for i, spoke in enumerate(shape.spokes):
        try:
            task_type(spec, spoke)
        except ConfigError as e:
            add(("topology", "spokes", i), e.message)


def wiring(spec: TopologySpec) -> dict[str, Wiring]:
    shape = _shape(spec)
    children = [{"type": task_type(spec, s), "capabilities": [f"spoke:{s}"]} for s in shape.spokes]
    wired = {s: Wiring(capabilities=[f"spoke:{s}"]) for s in shape.spokes}
    wired[shape.hub] = Wiring(capabilities=[f"hub:{shape.hub}"], config={"children": children})
    return wired


def entry(spec: TopologySpec) -> dict[str, Any]:
    return {"type": SUBMIT, "capabilities": [f"hub:{_shape(spec).hub}"]}
