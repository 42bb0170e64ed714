"""The mailbox behind every macp actor, and each incarnation's view of it.

A :class:`PriorityInbox` belongs to an actor's *name*: four FIFO lanes, one per
:class:`~macp.envelope.Priority`, read highest first, so a CRITICAL control command overtakes
queued work while messages of one priority keep their order. A restarted actor takes over its
predecessor's mailbox (as in Akka), so messages sent while it restarts are not lost. Only when
the name goes for good is the mailbox closed; a later ``put`` raises :class:`InboxClosed`.

An :class:`ActorInbox` is what one incarnation reads (Pykka's ``actor_inbox``): the name's
mailbox, plus a private queue for Pykka's own requests to *this* incarnation (stop, proxy
calls), read before the mailbox; they die with the incarnation, so a stop meant for an actor
that already crashed cannot stop its successor.

Neither takes a lock: a ``put`` appends to a deque (atomic) and then adds a token to the
mailbox's ``SimpleQueue`` (a C queue); the one reader takes a token, then the first item it
finds. Every token stands for an item appended before it, so the reader finds one, except when
the item was for an earlier incarnation: then it takes the next token. This is about three
times cheaper than ``queue.Queue``'s condition variable, on the hottest path of the runtime.
"""

from __future__ import annotations

import queue
from collections import deque
from typing import TYPE_CHECKING, Any

from macp.envelope import Envelope, Priority

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["ActorInbox", "InboxClosed", "PriorityInbox"]

_MEDIUM = int(Priority.MEDIUM)


class InboxClosed(Exception):
    """The mailbox's owner is gone for good."""


class PriorityInbox:
    """The mailbox of a name. Any thread may ``put``; only the name's actor reads it."""

    __slots__ = ("closed", "lanes", "tokens")

    def __init__(self) -> None:
        self.lanes: tuple[deque[Any], ...] = (deque(), deque(), deque(), deque())
        self.tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.closed = False

    def put(self, item: Any) -> None:
        """Queue a macp envelope in its priority's lane (anything else at MEDIUM)."""
        if self.closed:
            raise InboxClosed
        self.lanes[item.prio if type(item) is Envelope else _MEDIUM].append(item)
        self.tokens.put(None)

    def get(self) -> Any:
        """The next item, highest priority first; blocks while there is none."""
        lanes = self.lanes[::-1]
        while True:
            self.tokens.get()
            for lane in lanes:
                if lane:
                    return lane.popleft()

    def empty(self) -> bool:
        return not any(self.lanes)

    def depth(self) -> int:
        """Messages waiting, all lanes together."""
        return sum(map(len, self.lanes))

    qsize = depth

    def push_front(self, envelopes: Iterable[Envelope]) -> None:
        """Put ``envelopes`` (older than everything queued) back at the head of their lanes."""
        for env in reversed(list(envelopes)):
            self.lanes[env.prio].appendleft(env)
            self.tokens.put(None)

    def close(self) -> list[Any]:
        """Refuse every later ``put``; remove and return everything queued (the name is gone:
        its actor no longer reads)."""
        self.closed = True
        taken: list[Any] = []
        for lane in self.lanes:
            while lane:
                taken.append(lane.popleft())
        return taken


class ActorInbox:
    """One incarnation's inbox: its private Pykka requests first, then its name's mailbox."""

    __slots__ = ("lanes", "mailbox", "private")

    def __init__(self, mailbox: PriorityInbox) -> None:
        self.mailbox = mailbox
        self.private: deque[Any] = deque()
        self.lanes = mailbox.lanes[::-1]  # highest priority first (the lanes never change)

    def put(self, item: Any) -> None:
        """A macp envelope goes to the mailbox; a Pykka request to this incarnation only."""
        if type(item) is Envelope:
            self.mailbox.put(item)
        else:
            self.private.append(item)
            self.mailbox.tokens.put(None)

    def get(self) -> Any:
        private, lanes, tokens = self.private, self.lanes, self.mailbox.tokens
        while True:
            tokens.get()
            if private:
                return private.popleft()
            for lane in lanes:
                if lane:
                    return lane.popleft()

    def empty(self) -> bool:
        return not self.private and self.mailbox.empty()

    def take_private(self) -> list[Any]:
        """Remove and return the requests to this incarnation (at its end, to answer them)."""
        taken: list[Any] = []
        while self.private:
            taken.append(self.private.popleft())
        return taken
