"""Swarms and spawning: an agent of an allowed class started for real on a node, and a swarm,
a named group of such agents with a topology kind.

A swarm is a group (every agent has one): ``swarm_init`` spawns each of its agents with
``group`` set to the swarm's name, on the node asked for or the least loaded node allowing the
class (``node.spawn``: only classes a node allows with ``--spawnable`` or its topology file's
``gateway.spawnable``). All of them, or none: if one fails, those spawned are terminated.

Its declaration (name, topology kind, the agents asked for and spawned) is kept in the memory
store under namespace ``macp.swarms``, journaled on the head, so ``swarm_status`` knows it
after a restart of the gateway or of the head. The topology kind is recorded, not enforced:
tasks reach a swarm's agents through the coordinator, by capability, role or address.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from macp.actors.coordinator import TASKS
from macp.actors.coordinator.history import MAX_LIMIT
from macp.actors.memory import MEMORY_DELETE, MEMORY_GET, MEMORY_PUT
from macp.actors.registry import FIND
from macp.envelope import now_ms
from macp.errors import ConfigError, MacpError
from macp.gateway.ops._registry import REGISTRY
from macp.gateway.ops._spawn import spawn, terminate
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["SWARMS", "AgentSpawn", "SwarmAgent", "SwarmInit", "SwarmRef"]

SWARMS = "macp.swarms"
"""The memory store's namespace of swarm declarations (key: the swarm's name)."""
_NAME = r"^[A-Za-z0-9_.\-]+$"
_SPAWN_TIMEOUT_S = 30.0

Topology = Literal["mesh", "hierarchical", "star", "ring", "pipeline"]


class _Spawned(Params):
    class_: str = Field(alias="class", min_length=1)
    """The agent's class, package.module:Class, among those the node allows."""
    capabilities: list[str] | None = None
    """Its capabilities (default: its class's)."""
    role: str | None = None
    """Its role (default: its class's)."""
    node: str | None = None
    """The node to start it on (default: the least loaded node that allows the class)."""
    config: dict[str, Any] | None = None
    """Its config."""


class AgentSpawn(_Spawned):
    name: str | None = Field(None, pattern=_NAME)
    """Its name, unique on its node (default: made from the class's name)."""
    group: str | None = None
    """Its group (a swarm's name puts it in that swarm)."""
    timeout_s: float = Field(_SPAWN_TIMEOUT_S, gt=0)
    """How long to wait for it to be routable."""


class SwarmAgent(_Spawned):
    name: str | None = Field(None, pattern=_NAME)
    """Its name (with count > 1, each gets -1, -2, ...; default: swarm-class-N)."""
    count: int = Field(1, ge=1, le=100)
    """How many of them."""


class SwarmInit(Params):
    name: str = Field(pattern=_NAME)
    """The swarm's name: its agents' group."""
    topology: Topology = "mesh"
    """mesh, hierarchical, star, ring or pipeline (recorded with the swarm)."""
    agents: list[SwarmAgent] = Field(min_length=1)
    """The agents to spawn: class, and optionally name, count, capabilities, role, node."""
    timeout_s: float = Field(_SPAWN_TIMEOUT_S, gt=0)
    """How long to wait for each agent to be routable."""


class SwarmRef(Params):
    name: str = Field(min_length=1)
    """The swarm's name."""


def _class_name(cls: str) -> str:
    return cls.rpartition(":")[2].rpartition(".")[2].lower() or "agent"


@OPERATIONS.operation(
    "agent_spawn", AgentSpawn, Scope.AGENTS_ADMIN,
    "Start an agent of an allowed class for real, on the node asked for or the least loaded "
    "node that allows it; its address once it is routable.",
)  # fmt: skip
async def agent_spawn(runtime: Runtime, p: AgentSpawn) -> dict[str, Any]:
    name = p.name or f"{_class_name(p.class_)}-{uuid.uuid4().hex[:8]}"
    return await spawn(
        runtime, p.class_, name, node=p.node, config=p.config, capabilities=p.capabilities,
        role=p.role, group=p.group, timeout_s=p.timeout_s,
    )  # fmt: skip


@OPERATIONS.operation(
    "swarm_init", SwarmInit, Scope.AGENTS_ADMIN,
    "Declare a swarm (a named group with a topology kind) and spawn its agents for real, all "
    "or none; their addresses.",
)  # fmt: skip
async def swarm_init(runtime: Runtime, p: SwarmInit) -> dict[str, Any]:
    key = {"namespace": SWARMS, "key": p.name}
    if (await runtime.read("memory", MEMORY_GET, key))["found"]:
        raise ConfigError(
            f"swarm {p.name!r} exists already; swarm_status shows it, agent_spawn with "
            f"group {p.name!r} adds to it"
        )
    agents = [a.model_dump(by_alias=True, exclude_none=True) for a in p.agents]
    declaration: dict[str, Any] = {"name": p.name, "topology": p.topology, "agents": agents,
                                   "spawned": [], "created_ms": now_ms()}  # fmt: skip
    await runtime.request("memory", MEMORY_PUT, {**key, "value": declaration})
    try:
        for spec, name in _names(p):
            spawned = await spawn(
                runtime, spec.class_, name, node=spec.node, config=spec.config,
                capabilities=spec.capabilities, role=spec.role, group=p.name,
                timeout_s=p.timeout_s,
            )  # fmt: skip
            declaration["spawned"].append(spawned["address"])
    except MacpError:
        await _undo(runtime, key, declaration["spawned"])
        raise
    await runtime.request("memory", MEMORY_PUT, {**key, "value": declaration})
    return {"name": p.name, "topology": p.topology, "agents": declaration["spawned"],
            "count": len(declaration["spawned"])}  # fmt: skip


def _names(p: SwarmInit) -> list[tuple[SwarmAgent, str]]:
    named: list[tuple[SwarmAgent, str]] = []
    seen: Counter[str] = Counter()
    for spec in p.agents:
        base = spec.name or f"{p.name}-{_class_name(spec.class_)}"
        for _ in range(spec.count):
            seen[base] += 1
            one = spec.name is not None and spec.count == 1
            named.append((spec, base if one else f"{base}-{seen[base]}"))
    return named


async def _undo(runtime: Runtime, key: dict[str, str], spawned: list[str]) -> None:
    """Terminate the agents a failed swarm_init spawned, and forget the swarm."""
    for address in spawned:
        try:
            await terminate(runtime, address)
        except MacpError:  # its node went away meanwhile: nothing left to stop
            continue
    await runtime.request("memory", MEMORY_DELETE, key)


@OPERATIONS.operation(
    "swarm_status", SwarmRef, Scope.AGENTS_READ,
    "A swarm's topology kind, its agents as the registry has them (status, load, node), "
    "counts by status, and its agents' tasks.",
)  # fmt: skip
async def swarm_status(runtime: Runtime, p: SwarmRef) -> dict[str, Any]:
    found = await runtime.read("memory", MEMORY_GET, {"namespace": SWARMS, "key": p.name})
    if not found["found"]:
        raise ConfigError(f"no swarm named {p.name!r}; swarm_init declares one")
    declaration = found["value"]
    records = await runtime.read(REGISTRY, FIND, {"group": p.name})
    agents = [
        {k: r.get(k) for k in ("address", "node", "status", "load", "role", "capabilities",
                               "last_heartbeat_ms")}
        for r in records
    ]  # fmt: skip
    addresses = {a["address"] for a in agents}
    held = await runtime.read("coordinator", TASKS, {"limit": MAX_LIMIT})
    tasks = [t for t in held["tasks"] if t.get("agent") in addresses]
    return {
        "name": p.name, "topology": declaration["topology"],
        "created_ms": declaration["created_ms"], "agents": agents, "count": len(agents),
        "by_status": dict(Counter(a["status"] for a in agents)),
        "missing": sorted(set(declaration["spawned"]) - addresses),
        "tasks": {"by_state": dict(Counter(t["state"] for t in tasks)), "count": len(tasks),
                  "note": "the tasks the coordinator holds that an agent of the swarm ran or "
                          "runs; a task still pending has no agent yet and is not counted"},
    }  # fmt: skip
