"""Agents spawned on other nodes: the body of a ``node.spawn``, and the node chosen for one."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from macp.errors import ConfigError, MacpError
from macp.node._remote_spawn import least_loaded

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from macp.envelope import Wire
    from macp.runtime import NodeRuntime

__all__ = ["NODE_INFO", "choose_node", "spawn_body"]

NODE_INFO = "node.info"


def spawn_body(
    cls: str,
    name: str,
    *,
    config: Mapping[str, Wire] | None = None,
    capabilities: Sequence[str] | None = None,
    role: str | None = None,
    group: str | None = None,
) -> dict[str, Wire]:
    """The body of a ``node.spawn`` (:meth:`Cluster.spawn`'s, and the gateway's)."""
    return {
        "class": cls, "name": name, "config": dict(config) if config is not None else None,
        "capabilities": list(capabilities) if capabilities is not None else None,
        "role": role, "group": group,
    }  # fmt: skip


def choose_node(
    node: NodeRuntime,
    head: str,
    agents: Callable[[], list[dict[str, Any]]],
    cls: str,
    timeout_s: float,
) -> str:
    """The least loaded live node that allows spawning ``cls``: the fewest agents plus the sum
    of their loads, from the registry's records (``agents()``), among ``head`` and its peers
    that are up, each asked (``node.info``) which classes it allows.

    Raises:
        ConfigError: no live node allows it.
    """
    info = node.ask_node(head, NODE_INFO, timeout_s=timeout_s).get()
    nodes = [head] + [n for n, p in info["peers"].items() if p["state"] == "up"]
    allowing = [head] if cls in info.get("spawnable", ()) else []
    for name in nodes[1:]:
        with contextlib.suppress(MacpError):
            info = node.ask_node(name, NODE_INFO, timeout_s=timeout_s).get()
            if cls in info.get("spawnable", ()):
                allowing.append(name)
    chosen = least_loaded(agents(), allowing)
    if chosen is None:
        raise ConfigError(f"no live node allows spawning {cls!r}; start one with --spawnable {cls}")
    return chosen
