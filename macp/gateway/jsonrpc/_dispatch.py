"""JSON-RPC 2.0 over the operations table: one message in, its answer out.

Knows nothing of sockets: :class:`Dispatcher` turns a line (or a parsed message) into the
response to write, or ``None`` when nothing is answered (notifications). The methods are
``initialize``, ``tools/list``, ``tools/call`` (MCP-shaped, so a client written for MCP's
tools finds the same thing here), ``batch`` (params: a list of requests), and every operation of
the table by its own name (params: the operation's arguments; result: its result).

Every operation runs through the :class:`~macp.gateway.guard.Guard` as the connection's
principal. On a gateway with authentication configured, a connection proves who it is in
``initialize``'s params, ``{"auth": {"token": TOKEN_OR_API_KEY}}``; until it has, every method
but ``initialize`` and ``ping`` answers -32006 (Unauthorized). With none configured, every
connection is :meth:`~macp.gateway.guard.Principal.local`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Final

from macp.errors import InvalidParams, MacpError, ProtocolError, RateLimited, Unauthorized
from macp.gateway.audit import Outcome
from macp.gateway.guard import Guard, Principal, Role, Transport
from macp.gateway.table import error_of
from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from macp.gateway.bridge import Runtime
    from macp.gateway.table import Table

__all__ = [
    "PROTOCOL_VERSIONS",
    "RATE_LIMITED",
    "Dispatcher",
    "Session",
    "encode",
    "error_response",
    "parse_error",
]

PROTOCOL_VERSIONS: Final = ("2025-06-18", "2025-03-26", "2024-11-05")
"""The MCP protocol versions ``initialize`` accepts; the first is answered to any other."""
RATE_LIMITED: Final = RateLimited.code
"""The code of a request refused by the rate limit; ``data["retry_after_s"]`` says when to
retry."""
PARSE_ERROR: Final = -32700

_log = get_logger("macp.gateway")


_ANONYMOUS: Final = Principal("anonymous", Role.VIEWER, "none")
"""Who calls ``ping`` before ``initialize`` proved anything (nothing else is let through)."""
_OPEN_METHODS: Final = frozenset({"initialize", "notifications/initialized", "ping"})


@dataclass(slots=True)
class Session:
    """What one connection gives the dispatcher.

    Args:
        admit: called once per request before it runs; ``None`` lets it run, a number refuses
            it and is the seconds until one more would be admitted.
        calls: bounds the operations of the connection running at once.
        credential: what the connection's last successful ``initialize`` proved itself with;
            checked again at every call, so that a key revoked or a token expired since is
            refused at once.
    """

    admit: Callable[[], Awaitable[float | None]]
    calls: asyncio.Semaphore
    credential: str | None = field(default=None)
    connection: str | None = field(default=None)
    """The client's address, for the audit log."""


def encode(response: Any) -> bytes:
    """``response`` as one line of JSON (compact, UTF-8, ending in a newline).

    Raises:
        ValueError: it holds what JSON cannot say (NaN, infinity, a non-string key).
    """
    text = json.dumps(response, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode() + b"\n"


def error_response(request_id: Any, error: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def parse_error(reason: str) -> dict[str, Any]:
    """The answer to bytes that are not JSON (its id is null: none could be read)."""
    error = {"code": PARSE_ERROR, "message": f"parse error: {reason}",
             "data": {"error": "ParseError"}}  # fmt: skip
    return error_response(None, error)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(line: bytes) -> Any:
    return json.loads(line, parse_constant=_reject_constant)


_NO_ID: Final = object()


@dataclass(frozen=True, slots=True)
class _Request:
    id: Any  # _NO_ID for a notification
    method: str
    params: Any


def _request_of(message: Any) -> _Request:
    """``message`` checked as a JSON-RPC 2.0 request.

    Raises:
        ProtocolError: what is wrong, in one sentence; ``data["id"]`` holds its id when valid.
    """
    if not isinstance(message, dict):
        raise ProtocolError(
            f"invalid request: a request is a JSON object, not {_json_type(message)}"
        )
    request_id = message.get("id", _NO_ID)
    valid_id = request_id is _NO_ID or request_id is None or (
        isinstance(request_id, int | float | str) and not isinstance(request_id, bool)
    )  # fmt: skip
    known = {"id": request_id} if valid_id and request_id is not _NO_ID else {}
    if not valid_id:
        raise ProtocolError("invalid request: 'id' must be a string, a number or null")
    if message.get("jsonrpc") != "2.0":
        raise ProtocolError("invalid request: 'jsonrpc' must be \"2.0\"", data=known)
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise ProtocolError("invalid request: 'method' must be a non-empty string", data=known)
    params = message.get("params")
    if params is not None and not isinstance(params, dict | list):
        raise ProtocolError(
            f"invalid request: 'params' must be an object or an array, not {_json_type(params)}",
            data=known,
        )
    return _Request(request_id, method, params)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


class Dispatcher:
    """Answers JSON-RPC messages from ``table``'s operations, run against ``runtime``."""

    def __init__(self, table: Table, runtime: Runtime, guard: Guard | None = None) -> None:
        self._table = table
        self._runtime = runtime
        self.guard = guard or Guard()
        self._server_info = {"name": "macp", "version": version("macp")}

    async def answer_line(self, line: bytes, session: Session) -> Any:
        """The response to one line (a request or a batch), or ``None`` if none is due."""
        try:
            message = _loads(line)
        except RecursionError:
            return parse_error("nested too deeply")
        except ValueError as e:  # bad JSON, bad UTF-8, NaN
            return parse_error(str(e))
        return await self.answer(message, session)

    async def answer(self, message: Any, session: Session) -> Any:
        """The response to a parsed message: a dict, a list (for a batch array), or ``None``."""
        if isinstance(message, list):
            if not message:
                return error_response(
                    None, error_of(ProtocolError("invalid request: an empty batch"))
                )
            answers = await asyncio.gather(*(self._one(m, session) for m in message))
            kept = [a for a in answers if a is not None]
            return kept or None
        return await self._one(message, session)

    async def _one(self, message: Any, session: Session, *, nested: bool = False) -> Any:
        try:
            request = _request_of(message)
        except ProtocolError as e:
            request_id = e.data.pop("id", None)
            return error_response(request_id, error_of(e))
        retry_after_s = await session.admit()
        if retry_after_s is not None:
            outcome: dict[str, Any] = {"error": _rate_limited(retry_after_s)}
            self.guard.note(
                request.method, principal=None, transport=Transport.JSONRPC,
                outcome=Outcome.LIMITED, code=RateLimited.code, connection=session.connection,
            )  # fmt: skip
        else:
            outcome = await self._outcome(request, session, nested=nested)
        if request.id is _NO_ID:
            return None
        return {"jsonrpc": "2.0", "id": request.id, **outcome}

    async def _outcome(
        self, request: _Request, session: Session, *, nested: bool
    ) -> dict[str, Any]:
        try:
            return {"result": await self._call(request, session, nested=nested)}
        except asyncio.CancelledError:
            raise
        except MacpError as e:
            return {"error": error_of(e)}
        except Exception as e:  # noqa: BLE001 - a bug answers an error; the connection lives on
            _log.error("gateway.call_failed", method=request.method, exc_info=e)
            return {"error": error_of(e)}

    async def _call(self, request: _Request, session: Session, *, nested: bool) -> Any:
        method, params = request.method, request.params
        if method == "initialize":
            return self._initialize(params, session)
        principal = self._principal(session, method)
        if method == "notifications/initialized":
            return {}
        if method == "tools/list":
            return self._tools()
        if method == "tools/call":
            return await self._tools_call(params, session, principal)
        if method == "batch":
            if nested:
                raise ProtocolError("invalid request: a batch cannot hold another batch")
            return await self._batch(params, session)
        operation = self._table[method]
        async with session.calls:
            return await self.guard.call(
                operation, self._runtime, params, principal=principal, transport=Transport.JSONRPC
            )

    def _principal(self, session: Session, method: str) -> Principal:
        """Who runs ``method`` on this connection.

        Raises:
            Unauthorized: authentication is configured and the connection has not proved who
                it is (only ``initialize`` and ``ping`` are open before).
        """
        if not self.guard.configured:
            return Principal.local()
        if session.credential is not None:
            return self.guard.authenticate(session.credential)
        if method in _OPEN_METHODS:
            return _ANONYMOUS
        raise Unauthorized(
            f"{method}: this gateway needs a credential first: call initialize with params "
            '{"auth": {"token": "<a bearer token or an API key>"}}'
        )

    def _initialize(self, params: Any, session: Session) -> dict[str, Any]:
        asked = params.get("protocolVersion") if isinstance(params, dict) else None
        session.credential = None  # a failed initialize leaves the connection unproven
        principal = Principal.local()
        if self.guard.configured:
            try:
                credential = _credential(params)
                principal = self.guard.authenticate(credential)
            except MacpError as e:
                self._noted("initialize", None, session, Outcome.DENIED, e.code)
                raise
            session.credential = credential
        self._noted("initialize", principal, session, Outcome.OK, None)
        return {
            "protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0],
            "serverInfo": self._server_info,
            "capabilities": {"tools": {}},
            "principal": _described(principal),
        }

    def _noted(
        self,
        action: str,
        principal: Principal | None,
        session: Session,
        outcome: Outcome,
        code: int | None,
    ) -> None:
        """An action that is not an operation (``initialize``) in the audit log: no
        arguments, which hold the credential."""
        self.guard.note(action, principal=principal, transport=Transport.JSONRPC,
                        outcome=outcome, code=code, connection=session.connection)  # fmt: skip

    def _tools(self) -> dict[str, Any]:
        tools = [{"name": op.name, "description": op.summary, "inputSchema": op.input_schema()}
                 for op in self._table]  # fmt: skip
        return {"tools": tools}

    async def _tools_call(
        self, params: Any, session: Session, principal: Principal
    ) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise InvalidParams(
                f"tools/call: the params must be an object {{name, arguments}}, not "
                f"{_json_type(params)}"
            )
        name = params.get("name")
        if not isinstance(name, str):
            raise InvalidParams("tools/call: 'name' is required: the operation to call (a string)")
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidParams(
                f"tools/call: 'arguments' must be an object, not {_json_type(arguments)}"
            )
        try:
            operation = self._table[name]
            async with session.calls:
                result = await self.guard.call(
                    operation, self._runtime, arguments, principal=principal,
                    transport=Transport.JSONRPC,
                )  # fmt: skip
        except MacpError as e:  # as MCP answers it (macp.gateway.mcp.error_result)
            error = error_of(e)
            text = f"macp error {error['code']} ({error['data']['error']}): {error['message']}"
            return {"content": [{"type": "text", "text": text}], "structuredContent": error,
                    "isError": True}  # fmt: skip
        structured = result if isinstance(result, dict) else {"result": result}
        text = json.dumps(structured, ensure_ascii=False, allow_nan=False)
        return {"content": [{"type": "text", "text": text}], "structuredContent": structured,
                "isError": False}  # fmt: skip

    async def _batch(self, params: Any, session: Session) -> list[Any]:
        if not isinstance(params, list) or not params:
            raise InvalidParams("batch: the params must be a non-empty array of requests")
        answers = await asyncio.gather(*(self._one(m, session, nested=True) for m in params))
        return [a for a in answers if a is not None]


def _credential(params: Any) -> str:
    """``initialize``'s ``auth.token``.

    Raises:
        Unauthorized: none given.
    """
    auth = params.get("auth") if isinstance(params, dict) else None
    token = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not token:
        raise Unauthorized(
            'initialize: this gateway needs a credential: params {"auth": {"token": '
            '"<a bearer token or an API key>"}}'
        )
    return token


def _described(principal: Principal) -> dict[str, str]:
    return {"name": principal.name, "role": principal.role.value, "via": principal.via}


def _rate_limited(retry_after_s: float) -> dict[str, Any]:
    return error_of(RateLimited(
        f"too many requests on this connection; retry after {retry_after_s:g} s",
        retry_after_s=retry_after_s,
    ))  # fmt: skip
