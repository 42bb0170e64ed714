"""The WebSocket at ``/ws``: events for a management client, or an agent outside Python.

The first message decides, and must come within :data:`AUTH_TIMEOUT_S` (else the socket is
closed with :data:`UNAUTHENTICATED`):

- ``{"type": "auth", "token": ..., "topics"?: [...]}``: an event session. The token is checked
  by the guard (with no authentication configured, any token or none is the local user); a bad
  one closes the socket with :data:`UNAUTHENTICATED` and the reason. Then the client is told
  ``authenticated`` (its principal, role and topics) and gets every event of its topics
  (:mod:`.events`; all of them unless ``topics`` says fewer) that its principal may see. It
  may send ``{"type": "subscribe", "topics": [...]}`` and ``{"type": "unsubscribe", "topics":
  [...]}`` (answered ``subscribed`` with the topics it has now) and ``{"type": "ping"}``
  (answered ``pong``); anything else is answered with an ``error`` event, and the session
  goes on. A client too slow to read is closed with :data:`~.events.SLOW_CLOSE_CODE`.
  Without a token, the dashboard's session cookie is the credential, if the handshake's
  ``Origin`` is the gateway's own (:mod:`macp.gateway.dashboard.session`).
- ``{"type": "register", "key" | "token": ..., "name", "capabilities", ...}``: an agent outside
  Python. Its principal must be an ``agent`` or ``admin`` (else :data:`FORBIDDEN`); the
  session is then the register handler's (:data:`RegisterSession`, by default
  ``macp.gateway.external.register_session``). A gateway without it answers an ``error`` and
  closes with :data:`UNAVAILABLE`.

Everything the gateway sends is ``{"type", "timestamp", "data"}``. Before closing a socket
for a reason, it sends the reason as an ``error`` event too (a close reason is cut at 123
bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from macp.errors import InvalidParams, MacpError, RateLimited, Unauthorized, UnknownMessageType
from macp.gateway.audit import Outcome
from macp.gateway.dashboard.session import credential_of, own_origin
from macp.gateway.guard import Principal, Role, Transport
from macp.gateway.http.events import (
    SLOW_CLOSE_CODE,
    TOPICS,
    Event,
    EventHub,
    Subscription,
)
from macp.gateway.table import Scope, error_of
from macp.log import get_logger

if TYPE_CHECKING:
    from macp.gateway.guard import Guard

__all__ = [
    "AUTH_TIMEOUT_S",
    "FORBIDDEN",
    "TOO_MANY",
    "UNAUTHENTICATED",
    "UNAVAILABLE",
    "EventsEndpoint",
    "RegisterSession",
    "ws_route",
]

AUTH_TIMEOUT_S: Final = 5.0
"""Seconds a new socket has to send its first message."""
UNAUTHENTICATED: Final = 4401
"""Close code: no first message in time, not one the endpoint takes, or a bad credential."""
FORBIDDEN: Final = 4403
"""Close code: the principal is known but may not do what it asked."""
BAD_REQUEST: Final = 4400
"""Close code: the first message was understood but a field of it is wrong."""
UNAVAILABLE: Final = 4501
"""Close code: this gateway does not serve what the first message asked (``register``)."""
TOO_MANY: Final = 4429
"""Close code: the principal holds all the WebSockets it may at once (the reason says how many
and when to retry)."""

_REGISTER_ROLES: Final = frozenset({Role.AGENT, Role.ADMIN})
_MAX_REASON: Final = 123
_log = get_logger("macp.gateway.ws")

RegisterSession: TypeAlias = Callable[[WebSocket, dict[str, Any], Principal], Awaitable[None]]
"""Serves an external agent's session: ``(websocket, its register message, its principal)``;
the socket is accepted and its first message read; the session closes it when it ends."""


def _external() -> RegisterSession | None:
    """``macp.gateway.external.register_session``, when that module is there."""
    try:
        module = importlib.import_module("macp.gateway.external")
    except ImportError:
        return None
    session: RegisterSession | None = getattr(module, "register_session", None)
    return session


def _reason(message: str) -> str:
    """``message`` cut to what a close frame carries (123 bytes of UTF-8)."""
    encoded = message.encode()
    if len(encoded) <= _MAX_REASON:
        return message
    return encoded[: _MAX_REASON - 3].decode(errors="ignore") + "..."


def _error(exc: MacpError) -> Event:
    return Event.of("error", error_of(exc))


def _message(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A received ASGI message's JSON object.

    Raises:
        InvalidParams: not text, not JSON, or not an object with a string ``type``.
    """
    text = raw.get("text")
    if text is None:
        raise InvalidParams('messages are JSON text, e.g. {"type": "auth", "token": "..."}')
    try:
        message = json.loads(text)
    except ValueError:
        raise InvalidParams(f"a message must be JSON, not {text[:40]!r}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise InvalidParams('a message is a JSON object with a "type", e.g. {"type": "ping"}')
    return message


class EventsEndpoint:
    """The ``/ws`` endpoint: :meth:`serve` is its Starlette WebSocket endpoint.

    Args:
        hub: the gateway's event hub.
        guard: checks credentials (:meth:`Guard.authenticate`).
        auth_timeout_s: how long a new socket has to send its first message.
        register: serves ``register`` sessions (default: :mod:`macp.gateway.external`'s).
    """

    def __init__(
        self,
        hub: EventHub,
        guard: Guard,
        *,
        auth_timeout_s: float = AUTH_TIMEOUT_S,
        register: RegisterSession | None = None,
    ) -> None:
        self.hub = hub
        self.guard = guard
        self.auth_timeout_s = auth_timeout_s
        self.register = register

    async def serve(self, websocket: WebSocket) -> None:
        """One socket, from its first message to its close."""
        await websocket.accept()
        try:
            first = await asyncio.wait_for(websocket.receive(), self.auth_timeout_s)
        except TimeoutError:
            await self._refuse(websocket, UNAUTHENTICATED, Unauthorized(
                f'authenticate within {self.auth_timeout_s:g} s: send {{"type": "auth", '
                '"token": ...} first'
            ))  # fmt: skip
            return
        if first["type"] == "websocket.disconnect":
            return
        try:
            hello = _message(first)
        except InvalidParams as e:
            await self._refuse(websocket, UNAUTHENTICATED, e)
            return
        kind = hello["type"]
        if kind == "auth":
            await self._auth(websocket, hello)
        elif kind == "register":
            await self._register(websocket, hello)
        else:
            await self._refuse(websocket, UNAUTHENTICATED, Unauthorized(
                f'the first message must be {{"type": "auth", ...}} or {{"type": "register", '
                f"...}}, not type {kind[:30]!r}"
            ))  # fmt: skip

    def _principal(self, credential: object, websocket: WebSocket | None = None) -> Principal:
        """Who ``credential`` proves; the local user on a gateway with no authentication.
        With no credential, the dashboard's session cookie of ``websocket``'s handshake, if
        its ``Origin`` is the gateway's own page.

        Raises:
            Unauthorized: no credential, or one the guard refuses.
        """
        if not self.guard.configured:
            return Principal.local()
        if not credential and websocket is not None:
            credential = self._cookie(websocket)
        if not isinstance(credential, str) or not credential:
            raise Unauthorized(
                "this gateway needs a credential: give 'token' (or 'key') in the first message"
            )
        return self.guard.authenticate(credential)

    @staticmethod
    def _cookie(websocket: WebSocket) -> str | None:
        """The session cookie's credential, taken only from a page of this gateway.

        Raises:
            Unauthorized: the cookie came with another site's (or no) ``Origin``.
        """
        cookie = credential_of(websocket)
        if cookie is not None and not own_origin(websocket):
            raise Unauthorized(
                "the session cookie is taken only from this gateway's own pages (the Origin "
                "header must be its address); send 'token' in the first message instead"
            )
        return cookie

    async def _auth(self, websocket: WebSocket, hello: dict[str, Any]) -> None:
        try:
            principal = self._principal(hello.get("token"), websocket)
        except Unauthorized as e:
            await self._refuse(websocket, UNAUTHENTICATED, e)
            return
        if principal.role is not Role.AGENT and not principal.may(Scope.SYSTEM_READ):
            denied = Unauthorized(f"{principal.name} ({principal.role}) may not read events")
            await self._refuse(websocket, FORBIDDEN, denied)
            return
        try:
            topics = Subscription.topics_of(hello.get("topics", list(TOPICS)))
        except InvalidParams as e:
            await self._refuse(websocket, BAD_REQUEST, e)
            return
        with contextlib.ExitStack() as held:
            try:
                self._hold_slot(held, principal)
            except RateLimited as e:
                await self._refuse(websocket, TOO_MANY, e)
                return
            client = self.hub.subscribe(principal, topics)
            client.tell(Event.of("authenticated", {
                "principal": principal.name, "role": principal.role.value,
                "topics": sorted(client.topics),
            }))  # fmt: skip
            await self._session(websocket, client)

    def _hold_slot(self, held: contextlib.ExitStack, principal: Principal) -> None:
        """Hold one of ``principal``'s WebSocket slots until ``held`` closes.

        Raises:
            RateLimited: it holds all it may (:meth:`~macp.gateway.quotas.Quotas.websocket`).
        """
        if self.guard.quotas is not None:
            held.enter_context(self.guard.quotas.websocket(principal.name))

    async def _session(self, websocket: WebSocket, client: Subscription) -> None:
        sending = asyncio.create_task(self._send(websocket, client))
        receiving = asyncio.create_task(self._receive(websocket, client))
        try:
            await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client.close()
            for task in (sending, receiving):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _send(self, websocket: WebSocket, client: Subscription) -> None:
        try:
            while (event := await client.next()) is not None:
                await websocket.send_text(event.to_json())
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client went away
        reason = client.overflow or "too slow"
        _log.info("gateway.ws.dropped", principal=client.principal.name, reason=reason)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(SLOW_CLOSE_CODE, _reason(reason))

    async def _receive(self, websocket: WebSocket, client: Subscription) -> None:
        while True:
            raw = await websocket.receive()
            if raw["type"] == "websocket.disconnect":
                return
            try:
                self._answer(client, _message(raw))
            except MacpError as e:
                client.tell(_error(e))

    @staticmethod
    def _answer(client: Subscription, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            client.tell(Event.of("pong", {}))
            return
        if kind not in {"subscribe", "unsubscribe"}:
            raise InvalidParams(
                f"unknown message type {kind[:30]!r}: send subscribe, unsubscribe or ping"
            )
        topics = Subscription.topics_of(message.get("topics"))
        client.add(topics) if kind == "subscribe" else client.remove(topics)
        client.tell(Event.of("subscribed", {"topics": sorted(client.topics)}))

    async def _register(self, websocket: WebSocket, hello: dict[str, Any]) -> None:
        """An external agent's session, the register audited (allowed or refused) as one
        ``agent_register`` record, and one of its principal's WebSocket slots held while it
        lasts."""
        principal: Principal | None = None
        with contextlib.ExitStack() as held:
            try:
                principal = self._principal(hello.get("key") or hello.get("token"))
                session = self._admit(held, principal)
            except (Unauthorized, RateLimited, _Refused) as e:
                code, error = _refusal(e)
                self._note(websocket, hello, principal, error)
                await self._refuse(websocket, code, error)
                return
            self._note(websocket, hello, principal, None)
            await session(websocket, hello, principal)

    def _admit(self, held: contextlib.ExitStack, principal: Principal) -> RegisterSession:
        """The session that serves ``principal``'s register, a WebSocket slot held in ``held``.

        Raises:
            _Refused: not an agent's (or admin's) credential, or no register handler here.
            RateLimited: it holds all the WebSockets it may.
        """
        if principal.role not in _REGISTER_ROLES:
            raise _Refused(FORBIDDEN, Unauthorized(
                f"{principal.name} ({principal.role}) may not register an agent: it takes an "
                "agent's API key"
            ))  # fmt: skip
        self._hold_slot(held, principal)
        session = self.register or _external()
        if session is None:
            raise _Refused(UNAVAILABLE, UnknownMessageType(
                "this gateway does not serve agents outside Python (macp.gateway.external is "
                "not installed)"
            ))  # fmt: skip
        return session

    def _note(
        self,
        websocket: WebSocket,
        hello: dict[str, Any],
        principal: Principal | None,
        error: MacpError | None,
    ) -> None:
        """Audit a register: what it asked (never its credential), and how it ended."""
        outcome = (Outcome.OK if error is None else Outcome.LIMITED
                   if isinstance(error, RateLimited) else Outcome.DENIED)  # fmt: skip
        client = websocket.client
        self.guard.note(
            "agent_register", principal=principal, transport=Transport.WEBSOCKET,
            outcome=outcome, code=None if error is None else error.code,
            arguments={k: v for k, v in hello.items() if k not in {"key", "token"}},
            connection=None if client is None else f"{client.host}:{client.port}",
        )  # fmt: skip

    @staticmethod
    async def _refuse(websocket: WebSocket, code: int, error: MacpError) -> None:
        """Tell ``error`` as an ``error`` event, then close with ``code`` and its message."""
        if websocket.client_state is not WebSocketState.CONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.send_text(_error(error).to_json())
            await websocket.close(code, _reason(str(error)))


class _Refused(Exception):
    """A register refused with this close code and error."""

    def __init__(self, code: int, error: MacpError) -> None:
        super().__init__(error.message)
        self.code, self.error = code, error


def _refusal(exc: Exception) -> tuple[int, MacpError]:
    """The close code and error of a refused register."""
    if isinstance(exc, _Refused):
        return exc.code, exc.error
    if isinstance(exc, RateLimited):
        return TOO_MANY, exc
    assert isinstance(exc, MacpError)
    return UNAUTHENTICATED, exc


def ws_route(
    hub: EventHub,
    guard: Guard,
    *,
    path: str = "/ws",
    auth_timeout_s: float = AUTH_TIMEOUT_S,
    register: RegisterSession | None = None,
) -> WebSocketRoute:
    """The ``/ws`` route for a Starlette app: ``Starlette(routes=[..., ws_route(hub, guard)])``."""
    endpoint = EventsEndpoint(hub, guard, auth_timeout_s=auth_timeout_s, register=register)
    return WebSocketRoute(path, endpoint.serve)
