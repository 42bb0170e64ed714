"""Agents as the registry knows them, found without blocking the gateway's loop.

A bare name is looked up in the registry here (``registry.lookup``, awaited): the node's own
lookup of a bare name (``Node.resolve``) waits on a thread, which a handler must not do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.registry import FIND, LOOKUP
from macp.errors import ActorNotFound

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["address_of", "record_of"]

REGISTRY = "registry"


async def address_of(runtime: Runtime, agent: str) -> str:
    """``agent`` as ``name@node``: as given, or the registry's best agent of that name.

    Raises:
        ActorNotFound: no agent of that name is registered.
    """
    if "@" in agent:
        return agent
    found = await runtime.read(REGISTRY, LOOKUP, {"name": agent})
    if not isinstance(found, str):
        raise ActorNotFound(
            f"no agent named {agent!r} is registered; agent_list names those that are",
            data={"agent": agent},
        )
    return found


async def record_of(runtime: Runtime, agent: str) -> dict[str, Any]:
    """The registry's record of ``agent`` (an address or a bare name).

    Raises:
        ActorNotFound: the registry has no such agent.
    """
    address = await address_of(runtime, agent)
    node = address.partition("@")[2]
    for record in await runtime.read(REGISTRY, FIND, {"node": node}):
        if record["address"] == address:
            return dict(record)
    raise ActorNotFound(
        f"no agent {address!r} is registered; agent_list names those that are",
        data={"agent": address},
    )
