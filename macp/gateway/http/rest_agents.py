"""``POST /api/v1/agents/register``: an external agent's identity, made by an administrator.

An external program cannot hold tasks over a request and its answer: it runs connected to the
WebSocket at ``/ws``. So registering over REST gives it what it connects with: on a gateway
with authentication, a new API key with the agent role bound to that one agent name (shown
this once; the key registers no other name); on a gateway without, no key (none is needed).
The answer says where to connect (``websocket``) and the exact first message the program
sends there (``register``); the agent is a member of the runtime from the moment that message
is answered ``registered`` until its socket ends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from pydantic import Field, field_validator

from macp.address import check_name
from macp.errors import ConfigError
from macp.gateway.auth import Role
from macp.gateway.external import register_of
from macp.gateway.table import Operation, Params, Scope

if TYPE_CHECKING:
    from starlette.requests import Request

    from macp.gateway.bridge import Runtime
    from macp.gateway.guard import Guard

__all__ = ["AgentRegistration", "register_operation", "websocket_of"]

WS_PATH: Final = "/ws"
"""Where external agents connect (the gateway's WebSocket)."""


class AgentRegistration(Params):
    name: str = Field(min_length=1, max_length=200)
    """The agent's name, unique on the gateway's node (its address is name@node)."""
    capabilities: list[str] = Field(default_factory=list)
    """What the agent can do: the registry finds it by these."""
    handles: list[str] | None = None
    """The task types it runs (default: its capabilities)."""
    role: str | None = Field(None, min_length=1, max_length=200)
    """Its role in the runtime (tasks and stages may ask for an agent with a role)."""
    group: str | None = Field(None, min_length=1, max_length=200)
    """Its group."""
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    """What it says about itself (language, version, ...), shown in the registry."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        try:
            return check_name(name, "agent")
        except ConfigError as e:
            raise ValueError(str(e)) from None


def register_operation(guard: Guard) -> Operation[AgentRegistration]:
    """The operation behind ``POST /agents/register`` on a gateway whose calls ``guard``
    decides (its key store makes the keys)."""

    async def register(runtime: Runtime, p: AgentRegistration) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "register", "name": p.name,
                                   "capabilities": p.capabilities}  # fmt: skip
        given = (("handles", p.handles), ("role", p.role), ("group", p.group),
                 ("metadata", p.metadata or None))  # fmt: skip
        message.update({k: v for k, v in given if v is not None})
        answer: dict[str, Any] = {
            "name": p.name, "address": f"{p.name}@{runtime.cluster.node.name}", "key": None,
            "key_id": None, "principal": None, "websocket": WS_PATH, "register": message,
        }  # fmt: skip
        if guard.auth is not None:
            keys = guard.auth.keys
            if keys is None:
                raise ConfigError(
                    "this gateway keeps no API keys, so it cannot make an agent's key: start it "
                    "with --keys-db PATH, or give the program a JWT with the agent role"
                )
            record, key = await asyncio.to_thread(keys.create, p.name, Role.AGENT, agent=p.name)
            message["key"] = key
            answer.update(key=key, key_id=record.id, principal=record.principal)
        register_of(message)  # what the session will check, checked now
        return answer

    return Operation(
        "rest_agent_register", AgentRegistration, Scope.AGENTS_ADMIN,
        "Register an external agent's identity: on a gateway with authentication, an API key "
        "(agent role, bound to this name, shown once); where the program connects and the "
        "exact register message it sends first.",
        register,
    )  # fmt: skip


def websocket_of(request: Request, answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` with its ``websocket`` path made the URL the request came to (``ws://`` or,
    over HTTPS, ``wss://``)."""
    scheme = "wss" if request.url.scheme in {"https", "wss"} else "ws"
    url = request.url.replace(scheme=scheme, path=answer["websocket"], query="", fragment="")
    return {**answer, "websocket": str(url)}
