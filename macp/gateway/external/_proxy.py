"""The proxy: an agent of the runtime standing for a program connected over the WebSocket.

The proxy is an ordinary :class:`~macp.Agent` on the gateway's node, under its supervisor,
registered with the program's name and capabilities, so the registry finds it and the
coordinator routes it tasks (with their retries and timeouts) like any other agent. What it
does not do itself it hands to the program through its :class:`Link`:

* a task (``task.run``) goes to the program as ``task_assigned``; the handler returns a
  :class:`~macp.actors.context.Deferred`, so the proxy takes other messages meanwhile, and the
  session settles it, from the gateway's loop, when the program sends ``result`` or ``error``;
* a control command is run by the proxy (its state is the agent's: a paused proxy holds its
  tasks, the registry shows it paused) and then told to the program as ``control``.

Threading: the proxy's handlers run on its own thread; the session runs on the gateway's loop.
They share only the :class:`Link`, whose state is behind a lock and whose messages to the
program go through the loop (``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from macp.actors.agent import TASK_ACK, TASK_RUN, Agent
from macp.actors.handlers import mark
from macp.errors import AgentLost, AskTimeout, InvalidParams, UnknownMessageType

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from macp.actors.context import Context, Deferred, Reply
    from macp.commands import Command
    from macp.envelope import Envelope, Wire

__all__ = ["ExternalAgent", "InHand", "Link"]


@dataclass(frozen=True, slots=True)
class InHand:
    """A task the program has been given and not answered yet."""

    reply: Deferred
    context: Context
    type: str


class Link:
    """What the proxy and the session share: the program's tasks in hand, and its outbox.

    Args:
        loop: the gateway's loop, where the session writes to the socket.
        address: the proxy's address (``name@node``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str) -> None:
        self.address = address
        self.outbox: asyncio.Queue[dict[str, Wire]] = asyncio.Queue()
        self._loop = loop
        self._lock = threading.Lock()
        self._in_hand: dict[tuple[str, int], InHand] = {}
        self._lost: AgentLost | None = None
        self.incarnations = 0

    def post(self, message: dict[str, Wire]) -> None:
        """Send ``message`` to the program (from any thread; dropped once the loop is gone)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the program is gone too
            self._loop.call_soon_threadsafe(self.outbox.put_nowait, message)

    @property
    def lost(self) -> AgentLost | None:
        """Why the program is gone (``None`` while it is connected)."""
        return self._lost

    def assign(self, task_id: str, attempt: int, entry: InHand, timeout_s: float | None) -> bool:
        """Hold ``entry`` until the program answers attempt ``attempt`` of ``task_id``, or
        until twice its timeout has passed (the coordinator has given up on it long before);
        ``False`` if the program is gone."""
        with self._lock:
            if self._lost is not None:
                return False
            self._in_hand[task_id, attempt] = entry
        if timeout_s is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(
                    self._loop.call_later, 2 * timeout_s + 1, self._expire, task_id, attempt
                )
        return True

    def settle(self, task_id: str, attempt: int) -> InHand | None:
        """The task in hand the program answers now (no longer held); ``None`` if there is none
        (never given, answered already, or expired)."""
        with self._lock:
            return self._in_hand.pop((task_id, attempt), None)

    def find(self, task_id: str, attempt: int | None = None) -> InHand | None:
        """Attempt ``attempt`` of ``task_id`` in hand (``None``: its latest), still held."""
        with self._lock:
            if attempt is None:
                attempts = [a for (t, a) in self._in_hand if t == task_id]
                if not attempts:
                    return None
                attempt = max(attempts)
            return self._in_hand.get((task_id, attempt))

    def tasks(self) -> list[dict[str, Wire]]:
        """The tasks in hand, for STATUS."""
        with self._lock:
            return [
                {"task_id": t, "attempt": a, "type": e.type} for (t, a), e in self._in_hand.items()
            ]

    def lose(self, reason: str) -> list[InHand]:
        """The program is gone: refuse new tasks from now on; the tasks it had in hand, for the
        caller to fail (once the proxy no longer takes work)."""
        with self._lock:
            if self._lost is None:
                self._lost = AgentLost(
                    f"external agent {self.address} went away ({reason}) with the task in hand; "
                    "it is run again on another agent",
                    data={"agent": self.address},
                )
            taken, self._in_hand = list(self._in_hand.values()), {}
        return taken

    def _expire(self, task_id: str, attempt: int) -> None:
        entry = self.settle(task_id, attempt)
        if entry is not None:
            entry.reply.fail(AskTimeout(f"external agent {self.address} did not answer in time"))
            self.post({"type": "task_expired", "task_id": task_id, "attempt": attempt})


class ExternalAgent(Agent):
    """The proxy of one external agent (see the module's docstring).

    Args:
        link: what it shares with the program's session.
        handles: the task types the program runs (default: its capabilities).
        metadata: what the program says about itself (its language, version, ...); shown in
            the registry's record.
    """

    def __init__(
        self,
        config: Mapping[str, Wire] | None = None,
        *,
        link: Link,
        handles: Sequence[str] | None = None,
        metadata: Mapping[str, Wire] | None = None,
        capabilities: Sequence[str] | None = None,
        role: str | None = None,
        group: str | None = None,
    ) -> None:
        super().__init__(config, capabilities=capabilities, role=role, group=group)
        self._link = link
        self._types = frozenset(self.capabilities if handles is None else handles)
        self._about = dict(metadata or {})

    def on_start(self) -> None:
        self._link.incarnations += 1
        if self._link.incarnations > 1:  # RESTART: a fresh proxy, the same program
            self._link.post({"type": "control", "command": "restart", "params": {}})

    def record(self) -> dict[str, Wire]:
        record = super().record()
        record["handles"] = sorted(self._types)
        record["metadata"] = {**self._about, "class": "external", "external": True}
        return record

    def status(self) -> dict[str, Wire]:
        status = super().status()
        status["external"] = {"connected": self._link.lost is None, "tasks": self._link.tasks()}
        return status

    @mark(TASK_RUN)
    def _run_task(self, body: Wire, ctx: Context) -> Reply:
        """Hand a task the coordinator assigned to the program; answer when it does."""
        if not isinstance(body, dict):
            raise InvalidParams("task.run needs a map with the task's type and body")
        task_id, attempt, type_ = body.get("task_id"), body.get("attempt"), body.get("type")
        if (
            not isinstance(task_id, str)
            or not isinstance(attempt, int)
            or not isinstance(type_, str)
        ):
            raise InvalidParams("task.run needs a string task_id and type, and an integer attempt")
        self.tell(ctx.sender, TASK_ACK, {"task_id": task_id, "attempt": attempt})
        if type_ not in self._types:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownMessageType(
                f"external agent {self.address} does not run {type_!r} (it runs: {known})"
            )
        ctx.task_id, ctx.attempt = task_id, attempt
        timeout_s = body.get("timeout_s")
        timeout = float(timeout_s) if isinstance(timeout_s, int | float) and timeout_s > 0 else None
        reply = ctx.defer()
        if not self._link.assign(task_id, attempt, InHand(reply, ctx, type_), timeout):
            raise self._link.lost or AgentLost(f"external agent {self.address} went away")
        self._link.post({
            "type": "task_assigned", "task_id": task_id, "attempt": attempt, "task_type": type_,
            "body": body.get("body"), "timeout_s": timeout,
        })  # fmt: skip
        return reply

    def _run_command(self, command: Command, params: Wire) -> Wire:
        result = super()._run_command(command, params)
        self._link.post({"type": "control", "command": command.value, "params": params})
        return result

    def _refuse(self, env: Envelope, exc: BaseException) -> None:
        # A task refused because the program is gone (the proxy was stopped for that) is lost
        # with it, not failed by it: the coordinator runs it again elsewhere.
        lost = self._link.lost
        super()._refuse(env, lost if lost is not None and env.type == TASK_RUN else exc)
