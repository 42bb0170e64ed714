"""Operations about the system as a whole: ``ping`` (the gateway answers) and ``metrics``
(the monitor's figures and alerts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.monitor import ALERT_LOG as MONITOR_ALERT_LOG
from macp.actors.monitor import ALERTS as MONITOR_ALERTS
from macp.actors.monitor import METRICS as MONITOR_METRICS
from macp.envelope import now_ms
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["AlertList", "Metrics", "Ping"]


class Ping(Params):
    """No parameters."""


@OPERATIONS.operation(
    "ping", Ping, Scope.SYSTEM_READ, "Check the gateway answers: status and time."
)
async def ping(_runtime: Runtime, _params: Ping) -> dict[str, Any]:
    return {"status": "ok", "timestamp": now_ms()}


class Metrics(Params):
    prefix: str = ""
    """Only the figures whose name starts with this (e.g. "tasks." or "agent.")."""


@OPERATIONS.operation(
    "metrics", Metrics, Scope.SYSTEM_READ,
    "The monitor's figures (tasks, workflows, agents, nodes) from its last sample, and the "
    "alerts firing now.",
)  # fmt: skip
async def metrics(runtime: Runtime, p: Metrics) -> dict[str, Any]:
    figures = await runtime.read("monitor", MONITOR_METRICS)
    alerts = await runtime.read("monitor", MONITOR_ALERTS)
    shown = {k: v for k, v in figures.items() if k.startswith(p.prefix)}
    return {"metrics": shown, "alerts": alerts, "firing": len(alerts)}


class AlertList(Params):
    """No parameters."""


@OPERATIONS.operation(
    "alert_list", AlertList, Scope.SYSTEM_READ,
    "Alerts: the rules firing now (active, with the metric's value) and the recent "
    "transitions, newest first (rule, metric, value, op, threshold, state, time_ms).",
)  # fmt: skip
async def alert_list(runtime: Runtime, _params: AlertList) -> dict[str, Any]:
    answer = await runtime.read("monitor", MONITOR_ALERT_LOG)
    return {"active": answer["active"], "recent": answer["recent"]}
