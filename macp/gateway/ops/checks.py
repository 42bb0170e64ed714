"""Anti-jam checks: is an agent responsive, can a message to it be delivered now, and which
agents take (or are sent) messages at a flood's rate.

Each answer is made of the runtime's own figures: a real control round trip, the registry's
record (status, load, last heartbeat), the gateway node's view of its peers, and the monitor's
counts of each agent's messages.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from macp.actors.monitor import RATES
from macp.actors.registry import CONTROL_PLANE, LIST, ROUTABLE
from macp.commands import Command
from macp.envelope import now_ms
from macp.errors import MacpError
from macp.gateway.bridge import settled
from macp.gateway.ops._registry import address_of, record_of
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope, error_of

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["AgentCheck", "MessageFrequency"]

STALE_HEARTBEATS = 3
"""A heartbeat older than this many of the gateway node's intervals is stale."""
DEFAULT_FLOOD_PER_S = 50.0


class AgentCheck(Params):
    agent: str = Field(min_length=1)
    """The agent's address (name@node), or its name."""
    timeout_s: float = Field(5.0, gt=0)
    """How long to wait for the agent's answer to a status command."""


class MessageFrequency(Params):
    window_s: float = Field(60.0, gt=0)
    """The window the rates are taken over, in seconds."""
    flood_per_s: float = Field(DEFAULT_FLOOD_PER_S, ge=0)
    """An agent taking more messages a second than this is flagged as flooded."""
    agent: str | None = Field(None, min_length=1)
    """Only this agent (its address or name)."""
    include_control_plane: bool = False
    """Also the control plane's own actors (the monitor takes a sample stream of its own)."""


def _heartbeat(runtime: Runtime, record: dict[str, Any]) -> dict[str, Any]:
    last_ms = record.get("last_heartbeat_ms")
    age_ms = None if last_ms is None else max(0, now_ms() - int(last_ms))
    interval_s = runtime.cluster.node.settings.heartbeat_interval_s
    stale_ms = int(STALE_HEARTBEATS * interval_s * 1000)
    return {
        "last_heartbeat_ms": last_ms, "heartbeat_age_ms": age_ms,
        "heartbeat_stale": age_ms is None or age_ms > stale_ms,
    }  # fmt: skip


@OPERATIONS.operation(
    "check_agent_responsiveness", AgentCheck, Scope.AGENTS_READ,
    "A critical-priority status round trip to the agent (timed) and the age of its last "
    "heartbeat: responsive or not, and why.",
)  # fmt: skip
async def check_agent_responsiveness(runtime: Runtime, p: AgentCheck) -> dict[str, Any]:
    record = await record_of(runtime, p.agent)
    address = record["address"]
    heartbeat = _heartbeat(runtime, record)
    started = time.monotonic()
    try:
        status = await settled(
            runtime.cluster.node.control(address, Command.STATUS, timeout_s=p.timeout_s)
        )
    except MacpError as e:
        round_trip_ms, state = None, None
        error: dict[str, Any] | None = error_of(e)
        why = f"no answer to a status command: {type(e).__name__}: {e.message}"
    else:
        round_trip_ms = (time.monotonic() - started) * 1000
        error, state = None, status.get("state")
        why = f"answered a status command in {round_trip_ms:.1f} ms (state {state})"
    if heartbeat["heartbeat_stale"]:
        age = heartbeat["heartbeat_age_ms"]
        why += f"; its last heartbeat is stale ({age} ms old)"
    return {
        "agent": address, "responsive": error is None, "why": why,
        "round_trip_ms": round_trip_ms, "state": state, "status": record["status"],
        "load": record.get("load", 0), **heartbeat, "error": error,
    }  # fmt: skip


@OPERATIONS.operation(
    "check_message_recipient_status", AgentCheck, Scope.AGENTS_READ,
    "Whether a message to the agent can be delivered now: its registry status, its node up, "
    "its mailbox depth.",
)  # fmt: skip
async def check_message_recipient_status(runtime: Runtime, p: AgentCheck) -> dict[str, Any]:
    record = await record_of(runtime, p.agent)
    node = record["node"]
    peer = runtime.cluster.node.peers().get(node)
    node_state = "up" if node == runtime.cluster.node.name else (peer or {}).get("state")
    node_up = record["status"] != "offline" and node_state != "down"
    status = record["status"]
    if not node_up:
        deliverable, why = False, f"its node {node!r} is down (the registry has it {status})"
    elif status in ROUTABLE:
        deliverable, why = True, f"it is {status}, {record.get('load', 0)} message(s) queued"
    elif status == "paused":
        deliverable, why = True, "it is paused: a message is held, in order, until it resumes"
    else:
        deliverable, why = False, f"it is in {status!r} (crashed, restarting)"
    return {
        "agent": record["address"], "deliverable": deliverable, "why": why, "status": status,
        "node": node, "node_state": node_state, "node_up": node_up,
        "load": record.get("load", 0), **_heartbeat(runtime, record),
    }  # fmt: skip


@OPERATIONS.operation(
    "check_message_frequency", MessageFrequency, Scope.AGENTS_READ,
    "Each agent's messages over a window, from the monitor's counts, with the agents above "
    "flood_per_s flagged.",
)  # fmt: skip
async def check_message_frequency(runtime: Runtime, p: MessageFrequency) -> dict[str, Any]:
    body = {"window_s": p.window_s, "flood_per_s": p.flood_per_s}
    rates: dict[str, Any] = dict(await runtime.read("monitor", RATES, body))
    if p.agent is not None:
        address = await address_of(runtime, p.agent)
        rates = {address: rates[address]} if address in rates else {}
    elif not p.include_control_plane:
        records = await runtime.read("registry", LIST)
        own = {r["address"] for r in records if r.get("group") == CONTROL_PLANE}
        rates = {a: r for a, r in rates.items() if a not in own}
    flooded = sorted(a for a, r in rates.items() if r.get("flood"))
    return {
        "window_s": p.window_s, "flood_per_s": p.flood_per_s, "agents": rates,
        "flooded": flooded, "flooding": bool(flooded),
    }  # fmt: skip
