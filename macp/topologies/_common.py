"""What the four topology builders share: the task type an agent works on, and the hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from macp._loader import load_class
from macp.actors.agent import TASK_RUN, Agent
from macp.errors import ConfigError
from macp.topologies.roles import SUBMIT

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.topologies.spec import TopologySpec

__all__ = ["Add", "Extra", "Wiring", "agent_class", "declared", "task_type"]

Add = "Callable[[tuple[Any, ...], str], None]"


@dataclass
class Wiring:
    """What a topology adds to an agent's instances: capabilities, and config keys."""

    capabilities: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Extra:
    """An agent the topology itself runs (the assembly line's runner)."""

    name: str
    actor: type[Agent]
    node: str
    config: dict[str, Any]


def agent_class(spec: TopologySpec, name: str) -> type[Agent]:
    cls = load_class(spec.agent(name).class_, f"agent {name!r}")
    assert issubclass(cls, Agent)
    return cls


def task_type(spec: TopologySpec, name: str) -> str:
    """The one task type agent ``name`` works on: ``config.task_type``, or its only handler.

    Raises:
        ConfigError: it has none, or several and no ``config.task_type`` to choose.
    """
    chosen = spec.agent(name).config.get("task_type")
    if isinstance(chosen, str):
        return chosen
    handles = sorted(t for t in agent_class(spec, name)._handlers if t not in {TASK_RUN, SUBMIT})
    if len(handles) != 1:
        raise ConfigError(
            f"agent {name!r} handles {', '.join(handles) or 'nothing'}: set its config.task_type "
            "to the type this topology should send it"
        )
    return handles[0]


def declared(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None],
             names: list[tuple[tuple[Any, ...], str]]) -> bool:  # fmt: skip
    """Report each ``(loc, name)`` that is not a declared agent; whether all are."""
    known = {a.name for a in spec.agents}
    ok = True
    for loc, name in names:
        if name not in known:
            add(loc, f"{name!r} is not a declared agent; declare it under agents "
                     f"(declared: {', '.join(sorted(known)) or 'none'})")  # fmt: skip
            ok = False
    return ok
