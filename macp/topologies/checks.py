"""Checks a topology file needs beyond its shape: names, placement, classes, references."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from macp._loader import load_class
from macp.address import check_name
from macp.errors import ConfigError
from macp.topologies import builders
from macp.topologies.steps import check_steps
from macp.transport.security import check_endpoint

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.topologies.spec import TopologySpec

__all__ = ["check"]


def _names(items: list[Any], section: str, add: Callable[[tuple[Any, ...], str], None]) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        try:
            check_name(item.name, section.rstrip("s"))
        except ConfigError as e:
            add((section, i, "name"), e.message)
        if item.name in seen:
            add((section, i, "name"), f"{item.name!r} is declared twice; names must be unique")
        seen.add(item.name)


def check(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> None:
    """Report every problem with ``add(location, message)``; the workflow steps are checked
    against the agents and pools once nothing else is wrong."""
    found: list[str] = []

    def count(loc: tuple[Any, ...], message: str) -> None:
        found.append(message)
        add(loc, message)

    _check(spec, count)
    if not found:
        check_steps(spec, add)


def _check(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> None:
    _names(spec.nodes, "nodes", add)
    _names(spec.agents, "agents", add)
    _check_nodes(spec, add)
    _check_gateway(spec, add)
    if _check_agents(spec, add) and spec.topology is not None:
        builders.module(spec).check(spec, add)
    for i, workflow in enumerate(spec.workflows):
        for loc, message in workflow.problems():
            add(("workflows", i, *loc), f"workflow {workflow.name!r}: {message}")


def _check_nodes(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> None:
    heads = [i for i, n in enumerate(spec.nodes) if n.head]
    if len(heads) > 1:
        add(
            ("nodes", heads[1], "head"), "only one node can be the head (it runs the control plane)"
        )
    for i, node in enumerate(spec.nodes):
        try:
            check_endpoint(node.listen, "listen address", bind=True)
        except ConfigError as e:
            add(("nodes", i, "listen"), e.message)


def _check_gateway(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> None:
    gateway = spec.gateway
    if gateway.jwt_key_file is not None and gateway.jwt_secret_env is not None:
        add(("gateway", "jwt_secret_env"), "give jwt_key_file or jwt_secret_env, not both: "
            "tokens are checked with one key")  # fmt: skip
    if (gateway.tls_cert is None) != (gateway.tls_key is None):
        given, missing = (
            ("tls_cert", "tls_key") if gateway.tls_key is None else ("tls_key", "tls_cert")
        )
        add(("gateway", given), f"{given} needs {missing} too: HTTPS takes a certificate and "
            "its key")  # fmt: skip
    for field in ("jwt_key_file", "tls_cert", "tls_key"):
        path = getattr(gateway, field)
        if path is not None and not spec.resolve(path).is_file():
            add(("gateway", field), f"no such file: {spec.resolve(path)} (a path here is "
                "relative to the topology file)")  # fmt: skip


def _check_agents(spec: TopologySpec, add: Callable[[tuple[Any, ...], str], None]) -> bool:
    """Placement and classes; whether every class could be loaded."""
    nodes = {n.name for n in spec.nodes}
    classes_ok = True
    for i, agent in enumerate(spec.agents):
        for where in agent.nodes(spec.head.name):
            if where not in nodes:
                add(("agents", i, "node"), f"agent {agent.name!r} is placed on node {where!r}, "
                    f"which is not declared; use one of: {', '.join(sorted(nodes))}")  # fmt: skip
        try:
            load_class(agent.class_, "class")
        except ConfigError as e:
            add(("agents", i, "class"), e.message.removeprefix("class: "))
            classes_ok = False
    for i, path in enumerate(spec.gateway.spawnable):
        try:
            load_class(path, "spawnable")
        except ConfigError as e:
            add(("gateway", "spawnable", i), e.message.removeprefix("spawnable: "))
    placed: set[tuple[str, str]] = set()
    declared = Counter(a.name for a in spec.agents)  # a name declared twice is reported once
    for instance, _, where in spec.placement():
        if (instance, where) in placed and declared[instance] == 1:
            add(
                ("agents",), f"two agents would be named {instance!r} on node {where!r}; rename one"
            )
        placed.add((instance, where))
    return classes_ok
