"""Starting one node of a topology file: its transport, its control plane (on the head), and
the agents placed on it, under the file's supervision settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from macp.control_plane import start_control_plane
from macp.errors import ConfigError
from macp.node import Node
from macp.settings import Settings
from macp.supervisor import ChildSpec, SupervisorSpec
from macp.topologies import builders, shape
from macp.topologies._common import agent_class

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.topologies.spec import TopologySpec

__all__ = ["build_node", "journal_path", "start_node"]


def journal_path(spec: TopologySpec) -> Path:
    """The control plane's journal, absolute: ``settings.journal`` (relative to the file's
    folder, as every path in the file is), else ``$MACP_DATA_DIR/<topology>/journal.sqlite3``,
    else ``.macp/<topology>/journal.sqlite3`` beside the file. So a head started from any
    directory opens the same journal."""
    if spec.settings.journal:
        return spec.resolve(spec.settings.journal)
    data = os.environ.get("MACP_DATA_DIR")
    base = Path(data).absolute() if data else spec.folder / ".macp"
    return base / spec.name / "journal.sqlite3"


def build_node(
    spec: TopologySpec, name: str, *, addresses: Mapping[str, str] | None = None
) -> Node:
    """The (not yet started) node ``name`` of ``spec``; ``addresses`` override the file's.

    Raises:
        ConfigError: ``name`` is not a node of the file.
    """
    known = [n.name for n in spec.nodes]
    if name not in known:
        raise ConfigError(
            f"--node {name!r} is not a node of {spec.path}; use one of: {', '.join(known)}"
        )
    where = {n.name: (addresses or {}).get(n.name, n.listen) for n in spec.nodes}
    me = spec.node(name)
    s = spec.settings
    settings = Settings(
        heartbeat_interval_s=s.heartbeat_interval_s, heartbeat_misses=s.heartbeat_misses,
        acceptable_pause_s=s.acceptable_pause_s, ask_timeout_s=s.ask_timeout_s,
        shutdown_timeout_s=s.shutdown_timeout_s, abandon_grace_s=s.abandon_grace_s,
        max_message_bytes=s.max_message_bytes,
        strict=s.strict or Settings().strict,
    )  # fmt: skip
    peers = {n: a for n, a in where.items() if n != name and not a.endswith(":0")}
    keys = None if me.keys is None else spec.resolve(me.keys)
    return Node(
        name, listen=where[name], peers=peers, keys=keys, insecure=me.insecure,
        head=spec.head.name, settings=settings, spawnable=spec.gateway.spawnable,
    )  # fmt: skip


def _children(spec: TopologySpec, node: str) -> list[ChildSpec]:
    wired = builders.wiring(spec)
    children = []
    for instance, agent, where in spec.placement():
        if where != node:
            continue
        cls = agent_class(spec, agent.name)
        wiring = wired.get(agent.name)
        declared = agent.capabilities if agent.capabilities is not None else cls.capabilities
        capabilities = list(declared)
        config: dict[str, Any] = dict(agent.config)
        if wiring is not None:
            capabilities += [c for c in wiring.capabilities if c not in capabilities]
            config.update(wiring.config)
        kwargs = {"config": config, "capabilities": capabilities, "role": agent.role,
                  "group": agent.group}  # fmt: skip
        models = {"model_type": agent.model_type, "model_version": agent.model_version}
        kwargs.update({k: v for k, v in models.items() if v is not None})  # only if declared
        children.append(ChildSpec(cls, instance, kwargs=kwargs, restart=agent.restart))
    children.extend(
        ChildSpec(extra.actor, extra.name, kwargs={"config": extra.config})
        for extra in builders.extras(spec)
        if extra.node == node
    )
    return children


def start_node(
    spec: TopologySpec, name: str, *, addresses: Mapping[str, str] | None = None
) -> Node:
    """Build and start node ``name`` of ``spec``: the control plane too on the head, with the
    file's pools, settings and workflows, then the agents placed on this node."""
    node = build_node(spec, name, addresses=addresses).start()
    try:
        if name == spec.head.name:
            start_control_plane(
                node, journal=journal_path(spec), pools=spec.resources,
                coordinator=spec.coordinator.model_dump(exclude_unset=True),
                monitor=spec.monitor.model_dump(exclude_unset=True),
                retention=spec.settings.journal_retention.model_dump(exclude_unset=True),
            )  # fmt: skip
            for workflow in spec.workflows:
                definition = workflow.model_dump(exclude_unset=True)
                node.ask("coordinator", "workflow.define", definition).get()
            shape.record(node, spec)  # for the gateway's dashboard
        sup = spec.supervision
        node.start_child(SupervisorSpec(
            "agents", _children(spec, name), strategy=sup.strategy,
            max_restarts=sup.max_restarts, within_s=sup.within_seconds,
        ))  # fmt: skip
    except BaseException:
        node.stop()
        raise
    return node
