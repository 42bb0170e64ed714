"""A node's requests: each ask (or control command) gets a future, kept until its reply, an
error, its deadline or its node going down settles it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from macp.commands import Command
from macp.envelope import VERSION, Envelope, Kind, Priority, new_id, now_ms
from macp.errors import ConfigError
from macp.futures import AskFuture, PendingAsks

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.envelope import Wire

__all__ = ["Requests"]

_CRITICAL: Final = int(Priority.CRITICAL)


class Requests:
    """The asks one node sends, and the futures that wait for their answers.

    Args:
        client: the ``src`` of a request sent from outside any actor.
        ask_timeout_s: how long an ask waits when its sender does not say.
        send: the node's ``send``.
    """

    def __init__(self, client: str, ask_timeout_s: float, send: Callable[[Envelope], None]) -> None:
        self._client = client
        self._ask_timeout_s = ask_timeout_s
        self._send = send
        self.pending = PendingAsks()
        """The futures waiting, by the id of their request (the node settles them)."""

    def ask(  # noqa: PLR0917 - the node's callers name every argument
        self,
        kind: Kind,
        dst: str,
        type: str,
        body: Wire,
        timeout_s: float | None,
        prio: int,
        src: str | None,
        chain: tuple[str, ...],
    ) -> AskFuture:
        """Send a request to ``dst`` (an address already resolved); its future.

        Raises:
            ConfigError: ``timeout_s`` is not a positive number.
        """
        timeout = self._ask_timeout_s if timeout_s is None else timeout_s
        if not timeout > 0:
            raise ConfigError(f"timeout_s must be a positive number of seconds, not {timeout!r}")
        now = now_ms()
        env = Envelope(
            VERSION, new_id(), kind, type, src or self._client, dst, None, prio, now,
            now + int(timeout * 1000), chain, body,
        )  # fmt: skip
        future = AskFuture(dst, type, timeout)
        self.pending.add(env.id, future)
        try:
            self._send(env)
        except BaseException:
            self.pending.pop(env.id)
            raise
        return future

    def control(self, dst: str, command: str, params: Wire, timeout_s: float | None) -> AskFuture:
        """Send control command ``command`` to ``dst`` (an address already resolved).

        Raises:
            ConfigError: there is no such command.
        """
        type_ = Command.named(command).type
        return self.ask(Kind.CONTROL, dst, type_, params, timeout_s, _CRITICAL, None, ())
