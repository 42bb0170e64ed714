"""Control commands sent by the coordinator to many agents, each answer gathered.

``coordinator.control`` ``{command, target, params?}`` -> ``{address: {ok, result | error}}``:
a control command to one agent (an address or a name), a ``group:NAME``, a ``role:NAME``, or
``all``, with the answer of each. ``restart`` of a group restarts each of its agents on its
own (each by its own supervisor, at once, whatever is stuck); the coordinator does not restart
itself this way, since its answer would be lost with it.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from macp.commands import Command
from macp.envelope import Wire, new_id
from macp.errors import InvalidParams, MacpError, error_body

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.actors.context import Deferred
    from macp.futures import AskFuture
    from macp.runtime import NodeRuntime

__all__ = ["Commands", "ControlAnswer"]


class ControlAnswer(NamedTuple):
    """One agent's answer to a control command, handed to the coordinator's thread."""

    run_id: str
    address: str
    ok: bool
    value: Any


class Commands:
    """The control commands in flight, each with the answers gathered so far.

    Args:
        node: the coordinator's node.
        address: the coordinator's address.
        tell_self: queues a message to the coordinator (safe from any thread).
    """

    def __init__(self, node: NodeRuntime, address: str, tell_self: Callable[[Any], None]) -> None:
        self._node = node
        self._address = address
        self._tell_self = tell_self
        self._pending: dict[str, tuple[Deferred, dict[str, Wire], int]] = {}

    def send(
        self, body: Wire, targets: Callable[[str], list[str]], defer: Callable[[], Deferred]
    ) -> Deferred:
        """Send the command ``body`` names to the agents its target names (``targets``); the
        reply (made by ``defer``), resolved with every answer.

        Raises:
            InvalidParams: the command or target is malformed, or names no agent, or would
                restart the coordinator itself.
        """
        if not isinstance(body, dict):
            raise InvalidParams("control needs a map with 'command' and 'target'")
        command, target = body.get("command"), body.get("target")
        try:
            Command(str(command))
        except ValueError:
            known = ", ".join(Command)
            raise InvalidParams(f"'command' must be one of {known}, not {command!r}") from None
        if not isinstance(target, str) or not target:
            raise InvalidParams(
                "'target' must be an address, a name, 'group:NAME', 'role:NAME' or 'all'"
            )
        addresses = targets(target)
        if not addresses:
            raise InvalidParams(f"no registered agent matches target {target!r}")
        if command == Command.RESTART and self._address in addresses:
            raise InvalidParams(
                f"the coordinator cannot restart itself ({self._address} is in {target!r}): the "
                "answer would be lost with it; send restart to it with Node.control instead"
            )
        run_id, reply = new_id(), defer()
        self._pending[run_id] = (reply, {}, len(addresses))
        for address in addresses:
            try:
                future = self._node.control(address, str(command), body.get("params"))
            except MacpError as e:
                self.answer(ControlAnswer(run_id, address, ok=False, value=e))
                continue
            future.add_done_callback(partial(self._answered, run_id, address))
        return reply

    def _answered(self, run_id: str, address: str, future: AskFuture) -> None:
        error = future.exception()
        value = future.result() if error is None else error
        self._tell_self(ControlAnswer(run_id, address, ok=error is None, value=value))

    def answer(self, answer: ControlAnswer) -> None:
        """Gather one answer (on the coordinator's thread); the last one resolves the reply."""
        entry = self._pending.get(answer.run_id)
        if entry is None:
            return
        reply, results, expected = entry
        results[answer.address] = (
            {"ok": True, "result": answer.value}
            if answer.ok
            else {"ok": False, "error": error_body(answer.value)}
        )
        if len(results) == expected:
            del self._pending[answer.run_id]
            reply.resolve(results)
