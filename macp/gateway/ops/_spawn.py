"""Spawning agents from the gateway's loop: :meth:`macp.Cluster.spawn`, awaited.

The same ``node.spawn`` (:func:`~macp.cluster.spawn_body`) to the node asked for, or to the
least loaded live node that allows the class (:func:`~macp.node._remote_spawn.least_loaded`
over the registry's records); answered once the coordinator can route to the new agent.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from macp.actors.coordinator import TASKS
from macp.actors.registry import LIST, ROUTABLE
from macp.cluster import NODE_INFO, spawn_body
from macp.errors import AskTimeout, ConfigError
from macp.gateway.bridge import settled
from macp.gateway.ops._registry import REGISTRY
from macp.node._remote_spawn import SPAWN, TERMINATE, least_loaded

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from macp.gateway.bridge import Runtime

__all__ = ["spawn", "terminate"]

_POLL_S = 0.05  # how often the registry is asked whether a new agent is routable


async def spawn(
    runtime: Runtime,
    cls: str,
    name: str,
    *,
    node: str | None = None,
    config: Mapping[str, Any] | None = None,
    capabilities: Sequence[str] | None = None,
    role: str | None = None,
    group: str | None = None,
    timeout_s: float,
) -> dict[str, Any]:
    """Start agent ``name`` of class ``cls``; ``{"address", "node", "class"}`` once routable.

    Raises:
        Unauthorized: the node does not allow ``cls``.
        ConfigError: the name is taken, the class does not import, or no node allows it.
        AskTimeout: the agent was not routable within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    where = node or await _least_loaded_allowing(runtime, cls, timeout_s)
    body = spawn_body(cls, name, config=config, capabilities=capabilities, role=role, group=group)
    ask = runtime.cluster.node.ask_node(where, SPAWN, body, timeout_s=timeout_s)
    answer = dict(await settled(ask))
    await _routable(runtime, answer["address"], deadline)
    return answer


async def terminate(runtime: Runtime, address: str) -> bool:
    """Stop, for good, an agent :func:`spawn` started; ``False`` if it was gone already."""
    name, _, node = address.partition("@")
    answer = await settled(runtime.cluster.node.ask_node(node, TERMINATE, {"name": name}))
    return bool(answer["terminated"])


async def _least_loaded_allowing(runtime: Runtime, cls: str, timeout_s: float) -> str:
    node = runtime.cluster.node
    head = runtime.cluster.head
    info = await settled(node.ask_node(head, NODE_INFO, timeout_s=timeout_s))
    others = [n for n, p in info["peers"].items() if p["state"] == "up" and n != node.name]
    allowing = [head] if cls in info.get("spawnable", ()) else []
    infos = await asyncio.gather(
        *(settled(node.ask_node(n, NODE_INFO, timeout_s=timeout_s)) for n in others),
        return_exceptions=True,
    )
    for name, peer in zip(others, infos, strict=True):
        if not isinstance(peer, BaseException) and cls in peer.get("spawnable", ()):
            allowing.append(name)
    chosen = least_loaded(await runtime.read(REGISTRY, LIST), allowing)
    if chosen is None:
        raise ConfigError(f"no live node allows spawning {cls!r}; start one with --spawnable {cls}")
    return chosen


async def _routable(runtime: Runtime, address: str, deadline: float) -> None:
    """Wait until the registry shows ``address`` routable and the coordinator has the news."""
    while True:
        records = await runtime.read(REGISTRY, LIST)
        if any(r["address"] == address and r["status"] in ROUTABLE for r in records):
            break
        if time.monotonic() > deadline:
            raise AskTimeout(f"agent {address} was spawned but not routable in time",
                             data={"missing": [address]})  # fmt: skip
        await asyncio.sleep(_POLL_S)
    await runtime.request("coordinator", TASKS, {"states": []})  # answered after the news
