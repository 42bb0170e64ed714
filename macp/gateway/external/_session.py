"""One external agent's session: from its ``register`` message to its socket's end.

:func:`run_agent_session` is what the WebSocket endpoint calls for a first message of type
``register``. It checks the message and the agent key, spawns the proxy on the gateway's node
(:class:`~macp.gateway.external.ExternalAgent`), waits until the coordinator can route to it,
answers ``registered``, and then relays: tasks and control commands to the program, results,
errors and progress from it. When the socket ends, however it ends, the proxy is stopped (the
registry shows it offline, so nothing more is routed to it), the tasks it had in hand fail as
lost with it (:class:`~macp.errors.AgentLost`: the coordinator runs them again elsewhere, as
node failures), and the proxy is removed for good: the name is free for a reconnect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any, Final, Protocol

from starlette.websockets import WebSocketDisconnect

from macp.errors import ConfigError, InvalidParams, MacpError, Unauthorized, error_from_body
from macp.gateway.bridge import settled
from macp.gateway.external._messages import (
    CLOSE_INVALID,
    CLOSE_TAKEN,
    CLOSE_UNAUTHORIZED,
    Fail,
    Progress,
    Register,
    error_message,
    parse,
    register_of,
)
from macp.gateway.external._proxy import ExternalAgent, Link
from macp.gateway.guard import Principal
from macp.gateway.table import Scope
from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.envelope import Wire
    from macp.gateway.guard import Guard
    from macp.gateway.member import Member

__all__ = ["AgentSocket", "run_agent_session"]

READY_TIMEOUT_S: Final = 10.0
"""How long a new proxy may take to be routable before the register is refused."""
_STOP_TIMEOUT_S: Final = 5.0

_log = get_logger("macp.gateway.external")
_sessions: dict[str, asyncio.Event] = {}
"""The external agents with a session in this process, by address: set once it has ended."""


class AgentSocket(Protocol):
    """The WebSocket a session runs on (Starlette's, accepted; its first message read)."""

    async def send_json(self, data: Any) -> None: ...
    async def receive_text(self) -> str: ...
    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


async def run_agent_session(
    websocket: AgentSocket, first_message: Mapping[str, Any], *, member: Member, guard: Guard
) -> None:
    """Serve one external agent on ``websocket``, whose first message ``first_message`` is its
    ``register``, until the socket ends. Every refusal is an ``error`` message naming the
    problem, then a close: 4400 (the message does not fit), 4401 (no key, a wrong one, or one
    without the agent role), 4409 (the name is taken); nothing the program sends takes the
    gateway down."""
    try:
        register = register_of(dict(first_message))
        principal = _principal(guard, register.key, register.name)
    except MacpError as e:
        code = CLOSE_UNAUTHORIZED if isinstance(e, Unauthorized) else CLOSE_INVALID
        await _refuse(websocket, e, code)
        return
    address = f"{register.name}@{member.node.name}"
    ended = _sessions.get(address)
    if ended is not None and not ended.is_set():
        taken = ConfigError(f"external agent {address} is connected already; use another name")
        await _refuse(websocket, taken, CLOSE_TAKEN)
        return
    ended = _sessions[address] = asyncio.Event()
    link = Link(asyncio.get_running_loop(), address)
    try:
        try:
            await _spawn(member, register, link)
        except MacpError as e:
            await _refuse(websocket, e, CLOSE_TAKEN if isinstance(e, ConfigError) else 1011)
            return
        _log.info("external.registered", agent=address, principal=principal.name)
        await websocket.send_json({
            "type": "registered", "address": address, "name": register.name,
            "node": member.node.name, "capabilities": register.capabilities,
            "handles": register.handles or register.capabilities, "principal": principal.name,
        })  # fmt: skip
        reason = "the gateway closed its connection"
        try:
            reason = await _relay(websocket, link)
        finally:  # however the relay ended, cancelled with the gateway too
            await _close_down(member, link, register.name, reason)
    finally:
        ended.set()
        if _sessions.get(address) is ended:
            del _sessions[address]


def _principal(guard: Guard, key: str | None, name: str) -> Principal:
    """Who the program is: its key's principal, which must hold the ``agents:register`` scope
    (the agent role's; on a gateway without authentication, with no key: the local user), and,
    if the key is bound to an agent name (``claims["agent"]``), register that name."""
    if key is None:
        if guard.configured:
            raise Unauthorized("register needs 'key': an API key with the agent role")
        return Principal.local()
    principal = guard.authenticate(key)
    if not principal.may(Scope.AGENTS_REGISTER):
        raise Unauthorized(
            f"{principal.name} ({principal.role}) may not register an agent: it needs the "
            f"{Scope.AGENTS_REGISTER} scope (an API key with the agent role)"
        )
    bound = principal.claims.get("agent")
    if bound is not None and bound != name:
        raise Unauthorized(
            f"the key of {principal.name} is bound to the agent {bound!r}: it may not register "
            f"{name!r}; register as {bound!r} or ask for a key for {name!r}"
        )
    return principal


async def _refuse(websocket: AgentSocket, error: MacpError, code: int) -> None:
    with contextlib.suppress(Exception):  # the program may be gone already
        await websocket.send_json(error_message(error, "register"))
        await websocket.close(code, str(error)[:120])


async def _spawn(member: Member, register: Register, link: Link) -> None:
    """Start the proxy on the gateway's node; return once the coordinator can route to it.

    Raises:
        ConfigError: the name is taken on the gateway's node.
        AskTimeout: the proxy was not routable in time (it is removed again).
    """
    node = member.node
    await asyncio.to_thread(
        node.spawn, ExternalAgent, register.name, restart="temporary", link=link,
        capabilities=register.capabilities, handles=register.handles, role=register.role,
        group=register.group, metadata=register.metadata,
    )  # fmt: skip
    try:
        await asyncio.to_thread(
            member.cluster.wait_for_agents, [link.address], timeout_s=READY_TIMEOUT_S
        )
    except BaseException:
        await asyncio.to_thread(node.terminate, register.name)
        raise


async def _relay(websocket: AgentSocket, link: Link) -> str:
    """Relay until the socket ends; why it ended."""
    writer = asyncio.create_task(_write(websocket, link))
    try:
        while True:
            try:
                text = await websocket.receive_text()
            except WebSocketDisconnect as e:
                return f"its connection closed with code {e.code}"
            except RuntimeError:  # Starlette: the socket is no longer connected
                return "its connection closed"
            _take(link, text)
            if writer.done():  # the socket failed under the writer
                return "its connection broke"
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


async def _write(websocket: AgentSocket, link: Link) -> None:
    while True:
        message = await link.outbox.get()
        await websocket.send_json(message)


def _take(link: Link, text: str) -> None:
    """Act on one message from the program; what does not fit is answered with an ``error``
    message and the session goes on."""
    raw: object = None
    try:
        try:
            raw = json.loads(text)
        except ValueError:
            raise InvalidParams("a message must be one JSON object") from None
        message = parse(raw)
        if isinstance(message, Progress):
            entry = link.find(message.task_id, message.attempt)
            if entry is None:
                raise InvalidParams(_not_in_hand(message.task_id, message.attempt))
            entry.context.progress(message.fraction, message.message)
            return
        entry = link.settle(message.task_id, message.attempt)
        if entry is None:
            raise InvalidParams(_not_in_hand(message.task_id, message.attempt))
        if isinstance(message, Fail):
            body: dict[str, Wire] = {
                "code": message.code,
                "message": message.message,
                "data": message.data,
            }
            entry.reply.fail(error_from_body(body))
        else:
            entry.reply.resolve(message.result)
    except MacpError as e:
        about = raw.get("type") if isinstance(raw, dict) else None
        link.post(error_message(e, about if isinstance(about, str) else None))


def _not_in_hand(task_id: str, attempt: int | None) -> str:
    which = f"attempt {attempt} of task {task_id}" if attempt is not None else f"task {task_id}"
    return f"no {which} is in hand (never assigned, answered already, or expired)"


async def _close_down(member: Member, link: Link, name: str, reason: str) -> None:
    """The program is gone: stop the proxy (routing sees it offline), fail its tasks as lost,
    and remove it for good."""
    node = member.node
    taken = link.lose(reason)
    try:
        await asyncio.wait_for(settled(node.control(link.address, "stop")), _STOP_TIMEOUT_S)
    except (MacpError, TimeoutError) as e:  # the registry is unreachable: fail the tasks anyway
        _log.warning("external.stop_failed", agent=link.address, error=str(e))
    lost = link.lost
    for entry in taken:
        entry.reply.fail(lost or ConfigError(reason))
    await asyncio.to_thread(node.terminate, name)
    _log.info("external.gone", agent=link.address, reason=reason)
