"""What the dashboard draws that no other operation answers: ``topology_shape`` (the
topology's nodes, agents and edges, as the head recorded them) and ``metrics_history`` (several
of the monitor's series at once).

The shape is recorded by the head of a topology file (:mod:`macp.topologies.shape`) in the
memory store; a cluster started otherwise has none, and ``topology_shape`` then groups the
registry's agents by their group or role (``recorded`` false, no edges).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from pydantic import Field

from macp.actors.memory import MEMORY_GET
from macp.actors.monitor import HISTORY as MONITOR_HISTORY
from macp.actors.monitor import METRICS as MONITOR_METRICS
from macp.actors.registry import CONTROL_PLANE, LIST
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope
from macp.topologies.shape import KEY, NAMESPACE

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["MetricsHistory", "TopologyShape"]

MAX_SERIES: Final = 200
"""The most series one ``metrics_history`` call answers."""


class TopologyShape(Params):
    """No parameters."""


class MetricsHistory(Params):
    names: list[str] | None = Field(None, max_length=MAX_SERIES)
    """These series (e.g. "tasks.throughput{type=square}"); default: every one whose name
    starts with ``prefix``."""
    prefix: str = "tasks."
    """Without ``names``: the series whose name starts with this."""
    since_s: float = Field(300.0, gt=0, le=86_400)
    """How far back, in seconds."""
    limit: int = Field(100, ge=1, le=MAX_SERIES)
    """Without ``names``: at most this many series (sorted by name)."""


@OPERATIONS.operation(
    "topology_shape", TopologyShape, Scope.AGENTS_READ,
    "The topology's shape for drawing: nodes, declared agents with their instances, and edges "
    "(hub to spokes, stage to stage, lead to children); grouped by group or role if none was "
    "recorded.",
)  # fmt: skip
async def topology_shape(runtime: Runtime, _p: TopologyShape) -> dict[str, Any]:
    stored = await runtime.read("memory", MEMORY_GET, {"namespace": NAMESPACE, "key": KEY})
    if stored["found"] and isinstance(stored["value"], dict):
        return {**stored["value"], "recorded": True}
    records = await runtime.read("registry", LIST, {})
    agents: dict[str, dict[str, Any]] = {}
    nodes: list[str] = []
    for record in sorted(records, key=lambda r: str(r["address"])):
        node = str(record["address"]).partition("@")[2]
        if record.get("group") == CONTROL_PLANE:
            continue
        if node not in nodes:
            nodes.append(node)
        label = record.get("group") or record.get("role") or "agents"
        held = {"role": record.get("role"), "group": record.get("group"), "instances": []}
        group = agents.setdefault(str(label), held)
        group["instances"].append(record["address"])
    return {"name": None, "kind": None, "nodes": nodes, "head": runtime.cluster.head,
            "agents": agents, "edges": [], "recorded": False}  # fmt: skip


@OPERATIONS.operation(
    "metrics_history", MetricsHistory, Scope.SYSTEM_READ,
    "Several of the monitor's series at once over the last since_s seconds (per task type: "
    "throughput, error_rate, duration_p50_ms/p95/p99), each [[time_ms, value], ...].",
)  # fmt: skip
async def metrics_history(runtime: Runtime, p: MetricsHistory) -> dict[str, Any]:
    if p.names is not None:
        names = list(dict.fromkeys(p.names))
    else:
        figures = await runtime.read("monitor", MONITOR_METRICS)
        names = sorted(n for n in figures if n.startswith(p.prefix))[: p.limit]
    series = await asyncio.gather(*(
        runtime.read("monitor", MONITOR_HISTORY, {"metric": name, "since_s": p.since_s})
        for name in names
    ))  # fmt: skip
    return {"since_s": p.since_s, "series": dict(zip(names, series, strict=True))}
