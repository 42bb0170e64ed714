"""What a transport calls on the node above it: it is given these, and knows nothing else of it.

Every callback runs on the transport's I/O thread, so each must be quick and must not block
(a ``put`` on an inbox, a future settled); one that raises a :class:`~macp.errors.MacpError`
has the transport answer the message's sender where one waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.envelope import Envelope, Wire
    from macp.transport.liveness import PeerEvent

__all__ = ["Callbacks", "Later"]


@runtime_checkable
class Later(Protocol):
    """An answer settled later (an ``AskFuture``, which the transport does not import)."""

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...
    def result(self) -> Any: ...
    def exception(self) -> BaseException | None: ...


def _no_head() -> str | None:
    return None


def _ignore_head(_head: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Callbacks:
    """The node as its transport sees it.

    Attributes:
        deliver: an envelope addressed to this node: to its actor ``name`` (the part of ``dst``
            before ``@``), or, for a reply or an error, to the ask waiting for it.
        send: route an envelope as the node's own ``send`` does (a refusal to a local asker, a
            client's message relayed to another node); raises ``MacpError`` if it is refused.
        peer_event: a peer went up or down.
        node_ask: answer an ask addressed to the node itself that the transport does not
            handle (``node.info``), given its type and body; raises a ``MacpError`` to answer
            with an error (``UnknownMessageType`` for a type nodes do not handle). An answer
            that takes time (``node.spawn``) is a :class:`Later` instead: the reply is sent
            through ``send`` once it settles, on the thread that settles it.
        head: the node hosting the control plane, if this node knows it (told to nodes that
            join through this one).
        learn_head: the member this node joined named its head (the node takes it, unless it
            has one of its own).
    """

    deliver: Callable[[Envelope, str], None]
    send: Callable[[Envelope], None]
    peer_event: Callable[[PeerEvent], None]
    node_ask: Callable[[str, Wire], Wire | Later]
    head: Callable[[], str | None] = _no_head
    learn_head: Callable[[str], None] = _ignore_head
