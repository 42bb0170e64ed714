"""The operations table: every operation the gateway serves, written once.

An :class:`Operation` is a name, a pydantic model of its parameters (the JSON schema clients
are served comes from it), the scope a caller needs (what the guard checks against the caller's
role), a one-line summary, and an async handler over the cluster. The MCP server, the
JSON-RPC server and the HTTP API are each generated from one :class:`Table`; none of them
knows an operation by name.

Handlers are ``async def handler(runtime, params) -> result``: ``runtime`` is the
:class:`~macp.gateway.bridge.Runtime` (the cluster, reached without blocking the event loop),
``params`` the validated model, and the result a JSON value (a dict, for structured output).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from macp.errors import InternalError, InvalidParams, MacpError, UnknownMessageType
from macp.schema import Schema, check

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

    from macp.gateway.bridge import Runtime

__all__ = ["Operation", "Params", "Scope", "Table", "error_of"]

P = TypeVar("P", bound=BaseModel)


class Scope(enum.StrEnum):
    """What a caller must hold to call an operation (each operation declares one; a role holds
    a set, :data:`macp.gateway.auth.ROLE_SCOPES`). ``X:read`` looks, ``X:write`` changes;
    the memory scopes are checked again against the operation's ``namespace`` (a principal
    holds ``memory:NAMESPACE`` grants, ``memory:*`` for all)."""

    SYSTEM_READ = "system:read"
    """ping, metrics, alert_list."""
    AGENTS_READ = "agents:read"
    """The registry's agents and swarms, and the checks of one agent."""
    AGENTS_MESSAGE = "agents:message"
    """Send an agent a message (tell or ask)."""
    AGENTS_REGISTER = "agents:register"
    """Register an external agent (over the WebSocket) as its own principal."""
    CONTROL = "control"
    """The seven control commands to agents (pause, resume, stop, restart, ...)."""
    AGENTS_ADMIN = "agents:admin"
    """Spawn and terminate agents, start swarms."""
    TASKS_READ = "tasks:read"
    TASKS_WRITE = "tasks:write"
    """Submit and cancel tasks."""
    WORKFLOWS_READ = "workflows:read"
    WORKFLOWS_WRITE = "workflows:write"
    """Execute, pause, resume and cancel workflow runs."""
    WORKFLOWS_DEFINE = "workflows:define"
    """Define (and redefine) a workflow."""
    MEMORY_READ = "memory:read"
    """Read a namespace of the memory store (the principal must hold its grant too)."""
    MEMORY_WRITE = "memory:write"
    """Store in or delete from a namespace (the principal must hold its grant too)."""
    LOCKS_READ = "locks:read"
    LOCKS_WRITE = "locks:write"
    RESOURCES_READ = "resources:read"
    RESOURCES_WRITE = "resources:write"


class Params(Schema):
    """The base of every operation's parameters: an unknown key is refused by name."""


@dataclass(frozen=True, slots=True)
class Operation(Generic[P]):
    """One operation: its name, parameters, scope, summary and handler."""

    name: str
    params: type[P]
    scope: Scope
    summary: str
    handler: Callable[[Runtime, P], Awaitable[Any]]

    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the parameters (what ``tools/list`` serves)."""
        return self.params.model_json_schema()

    def parse(self, arguments: Mapping[str, Any] | None) -> P:
        """``arguments`` validated.

        Raises:
            InvalidParams: ``OPERATION: 'FIELD' sentence`` for the first problem.
        """
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidParams(
                f"{self.name}: the arguments must be a JSON object, not {type(arguments).__name__}"
            )
        return check(self.params, arguments or {}, self.name, InvalidParams)

    async def call(self, runtime: Runtime, arguments: Mapping[str, Any] | None) -> Any:
        """Validate ``arguments`` and run the handler.

        Raises:
            MacpError: what the operation raises (its class says what went wrong); an error
                that is not macp's is an :class:`~macp.errors.InternalError`.
        """
        params = self.parse(arguments)
        try:
            return await self.handler(runtime, params)
        except MacpError:
            raise
        except Exception as e:  # a bug in a handler answers an error, the server lives on
            raise InternalError(f"{self.name} failed: {type(e).__name__}: {e}") from e


class Table:
    """Operations by name. Build one with :meth:`operation` as a decorator."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation[Any]] = {}

    def operation(
        self, name: str, params: type[P], scope: Scope, summary: str
    ) -> Callable[[Callable[[Runtime, P], Awaitable[Any]]], Callable[[Runtime, P], Awaitable[Any]]]:
        """Register the decorated handler as operation ``name``.

        Raises:
            ValueError: ``name`` is taken (a table holds each name once).
        """

        def register(
            handler: Callable[[Runtime, P], Awaitable[Any]],
        ) -> Callable[[Runtime, P], Awaitable[Any]]:
            if name in self._ops:
                raise ValueError(f"operation {name!r} is defined twice")
            self._ops[name] = Operation(name, params, scope, summary, handler)
            return handler

        return register

    def __getitem__(self, name: str) -> Operation[Any]:
        """The operation ``name``.

        Raises:
            UnknownMessageType: no such operation (code -32601, JSON-RPC's "method not
                found"); the message lists a few that exist.
        """
        op = self._ops.get(name)
        if op is None:
            known = sorted(self._ops)
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")  # noqa: PLR2004
            raise UnknownMessageType(
                f"no operation named {name!r}; tools/list names them all ({shown})"
            )
        return op

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[Operation[Any]]:
        return iter(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)

    def names(self) -> list[str]:
        return sorted(self._ops)


def error_of(exc: BaseException) -> dict[str, Any]:
    """An error as the gateway answers it: ``{"code", "message", "data"}`` with the macp error's
    class name in ``data["error"]``; anything else is an internal error."""
    if not isinstance(exc, MacpError):
        exc = InternalError(f"{type(exc).__name__}: {exc}")
    data: dict[str, Any] = {"error": type(exc).__name__, **exc.data}
    return {"code": exc.code, "message": exc.message or str(exc), "data": data}
