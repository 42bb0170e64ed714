"""The control plane on a head node: ``start_control_plane(node, journal=...)`` starts the
registry, the resource manager, the memory store, the monitor, the coordinator, the
evaluations and the teams actors (collaboration sessions, projects and goals) under one
supervisor, and makes the node its own head."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from macp.actors.coordinator import Coordinator, CoordinatorOptions, JournalRetention
from macp.actors.evaluations import Evaluations
from macp.actors.memory import MemoryStore
from macp.actors.monitor import Monitor, MonitorOptions
from macp.actors.registry import Registry
from macp.actors.resources import ResourceManager
from macp.actors.teams import PROJECTS, SESSIONS, Projects, Sessions
from macp.errors import ConfigError
from macp.schema import check
from macp.supervisor import ChildSpec, SupervisorSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from macp.envelope import Wire
    from macp.node import Node

__all__ = ["start_control_plane"]


def start_control_plane(
    node: Node,
    *,
    journal: str | os.PathLike[str] | None = None,
    pools: Mapping[str, float] | None = None,
    coordinator: Mapping[str, Wire] | None = None,
    monitor: Mapping[str, Wire] | None = None,
    retention: Mapping[str, Wire] | None = None,
) -> None:
    """Start the control-plane actors on ``node`` and make it the head.

    Args:
        node: a started node.
        journal: the SQLite journal's path (default: a data directory per node); a relative
            path is taken from the current directory, now.
        pools: resource pools and their capacities.
        coordinator: coordinator settings (:class:`~macp.actors.coordinator.CoordinatorOptions`).
        monitor: monitor settings (:class:`~macp.actors.monitor.MonitorOptions`).
        retention: how long the journal keeps finished tasks and runs, and their idempotency
            keys (:class:`~macp.actors.coordinator.JournalRetention`; default: a day, at most
            100,000 tasks and 10,000 runs).

    Raises:
        ConfigError: a setting is unknown or malformed (named), or the Prometheus port is in
            use; nothing is started then.
    """
    options = check(MonitorOptions, dict(monitor or {}), "monitor", ConfigError)
    _check_port(options)
    settings = check(CoordinatorOptions, dict(coordinator or {}), "coordinator", ConfigError)
    kept = _wire(JournalRetention.of({"retention": dict(retention or {})}))
    path = None if journal is None else os.fspath(Path(journal).absolute())
    base: dict[str, Wire] = {"journal": path}
    node.set_head(node.name)
    node.start_child(
        SupervisorSpec(
            "control",
            [
                ChildSpec(Registry, "registry"),
                ChildSpec(
                    ResourceManager,
                    "resources",
                    kwargs={"config": {**base, "pools": dict(pools or {})}},
                ),
                ChildSpec(MemoryStore, "memory", kwargs={"config": base}),
                ChildSpec(Monitor, "monitor", kwargs={"config": _wire(options)}),
                ChildSpec(
                    Coordinator,
                    "coordinator",
                    kwargs={"config": {**base, **_wire(settings), "retention": kept}},
                ),
                ChildSpec(Evaluations, "evaluations", kwargs={"config": base}),
                ChildSpec(Sessions, SESSIONS, kwargs={"config": base}),
                ChildSpec(Projects, PROJECTS, kwargs={"config": base}),
            ],
            max_restarts=5,
            within_s=10,
        )
    )


def _wire(options: BaseModel) -> dict[str, Wire]:
    """The options given (defaults left to the actor), as an actor's config."""
    given: dict[str, Wire] = options.model_dump(exclude_unset=True)
    return given


def _check_port(monitor: MonitorOptions) -> None:
    """Refuse a Prometheus port in use: the monitor would fail to start, over and over."""
    port = monitor.prometheus_port
    if port is None:
        return
    addr = monitor.prometheus_addr
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
        try:
            probe.bind((addr, port))
        except OSError as e:
            raise ConfigError(
                f"monitor prometheus_port {port} on {addr} cannot be used ({e.strerror}); "
                "pick a free port, or 0 for any"
            ) from None
