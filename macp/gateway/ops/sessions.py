"""Collaboration sessions: groups of agents with a coordinator, their messages, and requests
for assistance. Each operation is the head's ``sessions`` actor's own request
(:mod:`macp.actors.teams.sessions`): every change is journaled before it is answered.

An agent may be named by its address or by its bare name (the registry's best agent of that
name). Scopes: reading sessions is ``agents:read``; creating, joining, leaving, closing and
messaging is ``agents:message`` (it tells agents messages); ``request_assistance`` submits a
task, so it is ``tasks:write``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from macp.actors.teams.assist import DEFAULT_TIMEOUT_S
from macp.actors.teams.messages import (
    SESSION_ASSIST,
    SESSION_CLOSE,
    SESSION_CREATE,
    SESSION_JOIN,
    SESSION_LEAVE,
    SESSION_LIST,
    SESSION_MESSAGES,
    SESSION_SEND,
    SESSION_STATUS,
    SESSIONS,
)
from macp.gateway.ops._registry import address_of
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = [
    "RequestAssistance",
    "SessionAgent",
    "SessionCreate",
    "SessionList",
    "SessionMessages",
    "SessionRef",
    "SessionSend",
]

_MARGIN_S = 5.0  # the sessions actor answers a request's timeout itself, this long before

Urgency = Literal["low", "normal", "high", "critical"]


class SessionCreate(Params):
    title: str = Field(min_length=1)
    """What the session is about."""
    description: str = ""
    """More about it."""
    participants: list[str]
    """The agents taking part (addresses name@node, or bare names)."""
    coordinator: str = Field(min_length=1)
    """The agent leading it (a participant too); told when a participant goes offline."""


class SessionRef(Params):
    session_id: str = Field(min_length=1)
    """The id create_collaboration_session answered."""


class SessionAgent(SessionRef):
    agent: str = Field(min_length=1)
    """The agent (an address name@node, or a bare name)."""


class SessionSend(SessionRef):
    sender: str = Field(min_length=1)
    """The participant the message is from."""
    body: Any = None
    """The message, any JSON value."""
    to: list[str] | None = Field(None, min_length=1)
    """Only these participants (default: every participant but the sender)."""


class SessionMessages(SessionRef):
    after_seq: int = Field(0, ge=0)
    """Only the messages numbered above this."""
    limit: int = Field(100, ge=1, le=1000)
    """At most this many, oldest first."""


class SessionList(Params):
    state: Literal["open", "closed"] | None = None
    """Only the sessions in this state."""


class RequestAssistance(Params):
    capabilities: list[str] = Field(min_length=1)
    """What the helper must be able to do."""
    body: Any = None
    """The work, any JSON value."""
    type: str | None = Field(None, min_length=1)
    """The handler type the helper runs (default: the first capability)."""
    urgency: Urgency = "normal"
    """The task's priority: low 0, normal 1, high 2, critical 3."""
    session_id: str | None = Field(None, min_length=1)
    """Prefer this session's participants with the capabilities."""
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=3600)
    """How long to wait for the answer (the task's timeout too)."""
    requester: str | None = Field(None, min_length=1)
    """The agent asking, never chosen as its own helper."""


async def _session(runtime: Runtime, type_: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(await runtime.request(SESSIONS, type_, body))


@OPERATIONS.operation(
    "create_collaboration_session", SessionCreate, Scope.AGENTS_MESSAGE,
    "Open a collaboration session: participants led by a coordinator agent, journaled.",
)  # fmt: skip
async def create_collaboration_session(runtime: Runtime, p: SessionCreate) -> dict[str, Any]:
    participants = [await address_of(runtime, a) for a in p.participants]
    body = {"title": p.title, "description": p.description, "participants": participants,
            "coordinator": await address_of(runtime, p.coordinator)}  # fmt: skip
    return await _session(runtime, SESSION_CREATE, body)


@OPERATIONS.operation(
    "join_session", SessionAgent, Scope.AGENTS_MESSAGE, "An agent joins an open session."
)
async def join_session(runtime: Runtime, p: SessionAgent) -> dict[str, Any]:
    body = {"session_id": p.session_id, "agent": await address_of(runtime, p.agent)}
    return await _session(runtime, SESSION_JOIN, body)


@OPERATIONS.operation(
    "leave_session", SessionAgent, Scope.AGENTS_MESSAGE,
    "A participant leaves a session (its coordinator cannot: close the session).",
)  # fmt: skip
async def leave_session(runtime: Runtime, p: SessionAgent) -> dict[str, Any]:
    body = {"session_id": p.session_id, "agent": await address_of(runtime, p.agent)}
    return await _session(runtime, SESSION_LEAVE, body)


@OPERATIONS.operation(
    "send_session_message", SessionSend, Scope.AGENTS_MESSAGE,
    "A participant's message, logged and told to the other participants (or to 'to').",
)  # fmt: skip
async def send_session_message(runtime: Runtime, p: SessionSend) -> dict[str, Any]:
    sender = await address_of(runtime, p.sender)
    body: dict[str, Any] = {"session_id": p.session_id, "sender": sender, "body": p.body}
    if p.to is not None:
        body["to"] = [await address_of(runtime, a) for a in p.to]
    return await _session(runtime, SESSION_SEND, body)


@OPERATIONS.operation(
    "session_messages", SessionMessages, Scope.AGENTS_READ,
    "A session's logged messages numbered above after_seq, oldest first.",
)  # fmt: skip
async def session_messages(runtime: Runtime, p: SessionMessages) -> dict[str, Any]:
    answer = await runtime.read(SESSIONS, SESSION_MESSAGES, p.model_dump())
    return {**answer, "count": len(answer["messages"])}


@OPERATIONS.operation(
    "close_session", SessionRef, Scope.AGENTS_MESSAGE, "Close a session (for good)."
)
async def close_session(runtime: Runtime, p: SessionRef) -> dict[str, Any]:
    return await _session(runtime, SESSION_CLOSE, {"session_id": p.session_id})


@OPERATIONS.operation(
    "session_status", SessionRef, Scope.AGENTS_READ,
    "A session: its participants (active, offline or left), its state and presence events.",
)  # fmt: skip
async def session_status(runtime: Runtime, p: SessionRef) -> dict[str, Any]:
    return dict(await runtime.read(SESSIONS, SESSION_STATUS, {"session_id": p.session_id}))


@OPERATIONS.operation(
    "list_sessions", SessionList, Scope.AGENTS_READ, "The sessions, oldest first."
)
async def list_sessions(runtime: Runtime, p: SessionList) -> dict[str, Any]:
    found = await runtime.read(SESSIONS, SESSION_LIST, {"state": p.state})
    return {"sessions": found, "count": len(found)}


@OPERATIONS.operation(
    "request_assistance", RequestAssistance, Scope.TASKS_WRITE,
    "Have an agent with the capabilities do the work (a session participant first), as a "
    "task at the urgency's priority; who helped and the answer.",
)  # fmt: skip
async def request_assistance(runtime: Runtime, p: RequestAssistance) -> dict[str, Any]:
    body = p.model_dump()
    if p.requester is not None:
        body["requester"] = await address_of(runtime, p.requester)
    answer = await runtime.request(
        SESSIONS, SESSION_ASSIST, body, timeout_s=p.timeout_s + _MARGIN_S
    )
    return dict(answer)
