"""Assembly line: items flow stage to stage (each stage's agent, with its replicas), the output
of one the input of the next, with a bounded number of items in flight per stage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.errors import ConfigError
from macp.topologies._common import Extra, Wiring, declared, task_type
from macp.topologies.roles import SUBMIT, Line
from macp.topologies.spec import Stage

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.topologies.spec import AssemblyLine, TopologySpec

__all__ = ["check", "entry", "extras", "wiring"]

LINE = "line"


def _stages(spec: TopologySpec) -> list[Stage]:
    shape: AssemblyLine = spec.topology  # type: ignore[assignment]
    return [s if isinstance(s, Stage) else Stage(agent=s) for s in shape.stages]


def check(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> None:
    stages = _stages(spec)
    if not stages:
        add(("topology", "stages"), "an assembly line needs at least one stage")
    if not declared(
        spec, add, [(("topology", "stages", i), s.agent) for i, s in enumerate(stages)]
    ):
        return
    for i, stage in enumerate(stages):
        try:
            task_type(spec, stage.agent)
        except ConfigError as e:
            add(("topology", "stages", i), e.message)
    if any(a.name == LINE for a in spec.agents):
        add(("agents",), f"the name {LINE!r} is taken by the assembly line's runner; rename it")


def wiring(spec: TopologySpec) -> dict[str, Wiring]:
    return {s.agent: Wiring(capabilities=[f"stage:{s.agent}"]) for s in _stages(spec)}


def extras(spec: TopologySpec) -> list[Extra]:
    stages = [
        {"type": task_type(spec, s.agent), "capabilities": [f"stage:{s.agent}"], "mode": s.mode,
         "max_in_flight": s.max_in_flight or 2 * spec.agent(s.agent).replicas}
        for s in _stages(spec)
    ]  # fmt: skip
    return [Extra(LINE, Line, spec.head.name, {"stages": stages})]


def entry(spec: TopologySpec) -> dict[str, Any]:
    return {"type": SUBMIT, "agent": f"{LINE}@{spec.head.name}"}
