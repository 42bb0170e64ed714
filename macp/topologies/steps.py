"""Checks of a topology file's workflow steps against what the file starts: each step must be
one that some agent of the file would take (the coordinator's own routing rule) and handle, and
its resources must fit the file's pools, or its runs would wait for it forever."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.agent import TASK_RUN
from macp.actors.coordinator.agents import AgentView, Breaker, need_of
from macp.errors import ConfigError
from macp.topologies import builders
from macp.topologies._common import agent_class

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.actors.coordinator.dag import Step
    from macp.schema import Location
    from macp.topologies.spec import TopologySpec

__all__ = ["check_steps"]

_FOREVER = "so the step would wait for {it} forever"


def _agents(spec: TopologySpec) -> list[AgentView]:
    """Every agent instance the file starts, as the coordinator will see it once registered."""
    try:
        wired = builders.wiring(spec)
        extras = builders.extras(spec)
    except ConfigError:  # the topology's own problems are reported by its check
        wired, extras = {}, []
    views = []
    for instance, agent, node in spec.placement():
        cls = agent_class(spec, agent.name)
        capabilities = list(agent.capabilities if agent.capabilities is not None
                            else cls.capabilities)  # fmt: skip
        wiring = wired.get(agent.name)
        capabilities += wiring.capabilities if wiring is not None else []
        role, group = agent.role or cls.role, agent.group or cls.group
        views.append(_view(f"{instance}@{node}", cls, capabilities, role=role, group=group))
    for extra in extras:
        cls = extra.actor
        address = f"{extra.name}@{extra.node}"
        views.append(_view(address, cls, list(cls.capabilities), role=cls.role, group=cls.group))
    return views


def _view(
    address: str, cls: Any, capabilities: list[str], *, role: str | None, group: str | None
) -> AgentView:
    handles = frozenset(t for t in cls._handlers if t != TASK_RUN)
    node = address.partition("@")[2]
    return AgentView(address, node, frozenset(capabilities), handles, "available", group, role,
                     Breaker(1, 0.0))  # fmt: skip


def _listed(values: set[str] | list[str]) -> str:
    return ", ".join(sorted(values)) or "(none)"


def _nobody(step: Step, need: tuple[str, ...], agents: list[AgentView]) -> tuple[str, str]:
    """Where and why no agent of the file would take ``step``."""
    kind, one = need[0], _FOREVER.format(it="one")
    if kind == "agent":
        wanted = need[1]
        instances = {a.address: a.address.partition("@")[0] for a in agents}
        named = [a for a, i in instances.items() if wanted in (i, i.rpartition("-")[0])]
        choices = _listed(named or list(instances))
        return "agent", (f"no agent of this file is {wanted!r}, {_FOREVER.format(it='it')}; "
                         f"name an instance as NAME@NODE: {choices}")  # fmt: skip
    if kind == "role":
        roles = _listed({a.role for a in agents if a.role})
        return "role", (f"no agent of this file has the role {need[1]!r}, {one}; "
                        f"roles declared: {roles}")  # fmt: skip
    if kind == "capabilities":
        declared = _listed({c for a in agents for c in a.capabilities})
        return "capabilities", (f"no agent of this file has the capabilities "
                                f"[{', '.join(need[1:])}], {one}; "
                                f"capabilities declared: {declared}")  # fmt: skip
    handled = _listed({t for a in agents for t in a.handles})
    return "type", (f"no agent of this file handles {step.type!r}, {one}; "
                    f"use a type one handles: {handled}")  # fmt: skip


def check_steps(spec: TopologySpec, add: Callable[[Location, str], None]) -> None:
    """Report each step no agent of the file would take and handle, and each resource amount
    that names no declared pool or exceeds its capacity."""
    agents = _agents(spec)
    for i, workflow in enumerate(spec.workflows):
        for j, step in enumerate(workflow.steps):
            where: Location = ("workflows", i, "steps", j)
            need = need_of(step.type, agent=step.agent, role=step.role,
                           capabilities=step.capabilities)  # fmt: skip
            takers = [a for a in agents if a.meets(need)]
            if not takers:
                field, message = _nobody(step, need, agents)
                add((*where, field), message)
            elif not any(step.type in a.handles for a in takers):
                names = _listed({a.address.partition("@")[0] for a in takers})
                handled = _listed({t for a in takers for t in a.handles})
                add((*where, "type"), f"the agents that could take the step ({names}) do not "
                    f"handle {step.type!r}; they handle: {handled}")  # fmt: skip
            _check_resources(spec, step, where, add)


def _check_resources(spec: TopologySpec, step: Step, where: Location,
                     add: Callable[[Location, str], None]) -> None:  # fmt: skip
    for pool, amount in step.resources.items():
        capacity = spec.resources.get(pool)
        if capacity is None:
            add((*where, "resources", pool), f"pool {pool!r} is not declared; declare it under "
                f"resources (declared: {_listed(set(spec.resources))})")  # fmt: skip
        elif amount > capacity:
            add((*where, "resources", pool), f"{amount:g} of pool {pool!r} is more than its "
                f"capacity of {capacity:g}, so the step could never run; ask for at most "
                f"{capacity:g}, or raise the capacity")  # fmt: skip
