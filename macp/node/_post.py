"""A node's post: what becomes of an envelope addressed to this node (a local actor's inbox,
a waiting ask, a restart order to a supervisor), of one that cannot be delivered, and of one
whose body the payload rule refuses."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

from macp._inbox import InboxClosed
from macp.commands import Command
from macp.envelope import Kind
from macp.errors import ActorNotFound, InvalidParams, error_from_body
from macp.log import Throttle
from macp.payload import fit_envelope
from macp.transport.router import SYSTEM

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Callable

    import structlog

    from macp._inbox import PriorityInbox
    from macp.envelope import Envelope
    from macp.errors import MacpError
    from macp.futures import PendingAsks
    from macp.node._spawner import Spawner

__all__ = ["Post"]

_REPLY: Final = int(Kind.REPLY)
_ERROR: Final = int(Kind.ERROR)
_ANSWERS: Final = frozenset({_REPLY, _ERROR})
_RESTART: Final = Command.RESTART.type


class Post:
    """Delivery on one node.

    Args:
        node: the node's name.
        mailboxes: the node's actors' inboxes by name.
        pending: the node's asks waiting for replies.
        spawner: the node's spawner (a ``restart`` goes to the agent's supervisor).
        send: the node's ``send`` (errors go back to askers through it).
        counters: the node's counters.
        log: the node's logger.
        max_body: the largest packed body the payload rule lets through.
    """

    def __init__(
        self,
        node: str,
        mailboxes: dict[str, PriorityInbox],
        pending: PendingAsks,
        spawner: Spawner,
        send: Callable[[Envelope], None],
        *,
        counters: Counter[str],
        log: Any,
        max_body: int,
    ) -> None:
        self._node = node
        self._src = f"{SYSTEM}@{node}"
        self._mailboxes = mailboxes
        self._pending = pending
        self._spawner = spawner
        self._send = send
        self._counters = counters
        self._log: structlog.stdlib.BoundLogger = log
        self._max_body = max_body
        self._refusals = Throttle()  # payload.refused lines, per message type
        self._refusals_lock = threading.Lock()
        self.stopping = False

    def deliver(self, env: Envelope, name: str) -> None:
        """Deliver ``env``, addressed to this node, to actor ``name`` or a waiting ask."""
        if env.kind in _ANSWERS:
            future = self._pending.pop(env.corr)
            if future is None:
                self._counters["late_replies"] += 1
            elif env.kind == _REPLY:
                future.settle(env.body)
            else:
                future.settle(exc=error_from_body(env.body))
            return
        if env.type == _RESTART:  # to the agent's supervisor: the agent may be stuck
            error = self._spawner.restart(env, name)
            if error is not None:
                self.undeliverable(env, error)
            return
        inbox = self._mailboxes.get(name)
        if inbox is not None:
            try:
                inbox.put(env)
            except InboxClosed:
                pass
            else:
                return
        self.undeliverable(env, ActorNotFound(f"no actor named {name!r} on node {self._node!r}"))

    def undeliverable(self, env: Envelope, exc: MacpError) -> None:
        """Count ``env`` as undeliverable; an asker gets ``exc`` as its answer."""
        self._counters["undeliverable"] += 1
        if env.answered:  # answered by the node itself: a peer checks that src is its own
            self._send(env.error(exc, self._src))
        elif env.kind not in _ANSWERS and not self.stopping:
            self._log.info("envelope.undeliverable", msg_id=env.id, type=env.type, dst=env.dst)

    def fit(self, env: Envelope) -> Envelope:
        """``env`` as it may be sent, once the payload rule's thorough check vouches for it.

        Raises:
            InvalidParams: the body breaks the payload rule (logged, a few lines per type).
        """
        try:
            return fit_envelope(env, self._max_body)
        except InvalidParams as e:
            self._counters["refused_payload"] += 1
            with self._refusals_lock:  # a sender looping on a bad value costs a few lines
                self._refusals.warn(
                    self._log, env.type, "payload.refused",
                    type=env.type, src=env.src, dst=env.dst, reason=e.message,
                )  # fmt: skip
            raise
