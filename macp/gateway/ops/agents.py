"""Agent operations: list and find agents, an agent's status, control commands to one agent or
many, and a message to one agent (tell, or ask and wait for its reply).

The registry answers what it knows (status, load, node, last heartbeat); the agent itself
answers what only it knows (its state, queue, counters) through a ``status`` control command,
sent at CRITICAL priority so that it overtakes queued work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import Field, field_validator

from macp.actors.coordinator import CONTROL, COUNTS, with_counts
from macp.actors.registry import CONTROL_PLANE, FIND, LIST
from macp.commands import COMMAND_PREFIX, Command
from macp.errors import MacpError
from macp.gateway.bridge import settled
from macp.gateway.ops._registry import REGISTRY, address_of, record_of
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope, error_of

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["AgentControl", "AgentList", "AgentMessage", "AgentRef", "FindAgents"]

Status = Literal["available", "busy", "paused", "offline", "error"]
CommandName = Literal["start", "stop", "pause", "resume", "configure", "status", "reset", "restart"]
assert set(get_args(CommandName)) == {c.value for c in Command}  # the runtime's, all of them


class AgentList(Params):
    include_control_plane: bool = False
    """Also list the control plane's own actors (registry, coordinator, memory, ...)."""


class FindAgents(Params):
    capabilities: list[str] = Field(default_factory=list)
    """Agents with every one of these capabilities."""
    role: str | None = None
    """Agents with this role."""
    status: list[Status] | None = None
    """Agents in any of these statuses (one may be given alone): available, busy, paused,
    offline, error."""
    group: str | None = None
    """Agents of this group (a swarm is a group)."""
    node: str | None = None
    """Agents on this node."""
    active_within_s: float | None = Field(None, gt=0)
    """Agents whose node reported them within this many seconds."""

    @field_validator("status", mode="before")
    @classmethod
    def _one_status(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class AgentRef(Params):
    agent: str = Field(min_length=1)
    """The agent's address (name@node), or its name."""
    timeout_s: float = Field(5.0, gt=0)
    """How long to wait for the agent's own answer."""


class AgentControl(Params):
    command: CommandName
    """start, stop, pause, resume, configure, status, reset or restart."""
    target: str = Field(min_length=1)
    """An agent's address or name, group:NAME, role:NAME, or all (the users' agents)."""
    params: dict[str, Any] | None = None
    """The command's parameters (configure: the config keys to set)."""


class AgentMessage(Params):
    agent: str = Field(min_length=1)
    """The agent's address (name@node), or its name."""
    type: str = Field(min_length=1)
    """The message type (a handler the agent declares)."""
    body: Any = None
    """The message's body, any JSON value."""
    mode: Literal["ask", "tell"] = "ask"
    """ask: wait for the reply; tell: send it and answer at once (at most once)."""
    timeout_s: float = Field(30.0, gt=0)
    """With ask: how long to wait for the reply."""

    @field_validator("type")
    @classmethod
    def _not_control(cls, value: str) -> str:
        if value.startswith(COMMAND_PREFIX):
            raise ValueError(f"{value!r} is a control command; send it with agent_control")
        return value


@OPERATIONS.operation(
    "agent_list", AgentList, Scope.AGENTS_READ,
    "Every registered agent: address, node, capabilities, role, group, status, load, last "
    "heartbeat, and the tasks it succeeded and failed (from the journal).",
)  # fmt: skip
async def agent_list(runtime: Runtime, p: AgentList) -> dict[str, Any]:
    agents = await runtime.read(REGISTRY, LIST)
    if not p.include_control_plane:
        agents = [a for a in agents if a.get("group") != CONTROL_PLANE]
    agents = with_counts(agents, await runtime.read("coordinator", COUNTS))
    return {"agents": agents, "count": len(agents)}


@OPERATIONS.operation(
    "find_agents", FindAgents, Scope.AGENTS_READ,
    "The agents matching every filter given (capabilities, role, status, group, node, active "
    "within), least loaded first.",
)  # fmt: skip
async def find_agents(runtime: Runtime, p: FindAgents) -> dict[str, Any]:
    agents = await runtime.read(REGISTRY, FIND, p.model_dump(exclude_none=True))
    return {"agents": agents, "count": len(agents)}


@OPERATIONS.operation(
    "agent_status", AgentRef, Scope.AGENTS_READ,
    "An agent's registry record, and its own status (state, queue depth, counters, last "
    "error) asked at critical priority.",
)  # fmt: skip
async def agent_status(runtime: Runtime, p: AgentRef) -> dict[str, Any]:
    record = await record_of(runtime, p.agent)
    live: Any = None
    live_error: dict[str, Any] | None = None
    if record["status"] == "offline":
        live_error = {"message": "the registry has it offline (stopped, or its node is down)"}
    else:
        try:
            live = await settled(
                runtime.cluster.node.control(record["address"], "status", timeout_s=p.timeout_s)
            )
        except MacpError as e:
            live_error = error_of(e)
    return {**record, "live": live, "live_error": live_error}


@OPERATIONS.operation(
    "agent_control", AgentControl, Scope.CONTROL,
    "A control command (start, stop, pause, resume, configure, status, reset, restart) to an "
    "agent, group:NAME, role:NAME or all; each agent's answer.",
)  # fmt: skip
async def agent_control(runtime: Runtime, p: AgentControl) -> dict[str, Any]:
    body = {"command": p.command, "target": p.target, "params": p.params}
    answers = await runtime.request("coordinator", CONTROL, body)
    return {
        "command": p.command, "target": p.target, "answers": answers,
        "ok": all(a["ok"] for a in answers.values()),
    }  # fmt: skip


@OPERATIONS.operation(
    "agent_message", AgentMessage, Scope.AGENTS_MESSAGE,
    "Send one agent a message: tell (no answer), or ask and answer its reply (waiting up to "
    "timeout_s).",
)  # fmt: skip
async def agent_message(runtime: Runtime, p: AgentMessage) -> dict[str, Any]:
    address = await address_of(runtime, p.agent)
    if p.mode == "tell":
        runtime.cluster.tell(address, p.type, p.body)
        return {"agent": address, "type": p.type, "mode": "tell", "sent": True}
    reply = await runtime.ask(address, p.type, p.body, timeout_s=p.timeout_s)
    return {"agent": address, "type": p.type, "mode": "ask", "reply": reply}
