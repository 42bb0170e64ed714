"""The mailbox behind every macp actor (plugged in through Pykka's ``_create_actor_inbox``).

Four FIFO lanes, one per :class:`~macp.envelope.Priority`; ``get`` takes from the highest
non-empty lane, so a CRITICAL control command overtakes queued work while messages of one
priority keep their order. Pykka's own messages (stop, proxy calls) travel in the MEDIUM lane,
so ``stop()`` still comes after the default-priority messages queued before it, as in Pykka.

The mailbox belongs to the child's *name*, not to one incarnation: a restarted actor takes over
its predecessor's mailbox (as in Akka), so messages sent while it restarts are not lost. Only
when the name goes away for good is the mailbox closed; a later ``put`` raises
:class:`InboxClosed`.
"""

from __future__ import annotations

import queue
from collections import deque
from typing import TYPE_CHECKING, Any

from macp.envelope import Envelope, Priority

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["InboxClosed", "PriorityInbox"]

_MEDIUM = int(Priority.MEDIUM)


class InboxClosed(Exception):
    """The mailbox's owner is gone for good."""


class PriorityInbox(queue.Queue):  # type: ignore[type-arg]
    """A ``queue.Queue`` of Pykka envelopes with one lane per priority."""

    def _init(self, maxsize: int) -> None:  # noqa: ARG002 - unbounded, as Pykka's inbox
        self._lanes: tuple[deque[Any], ...] = (deque(), deque(), deque(), deque())
        self._size = 0
        self.closed = False

    def _qsize(self) -> int:
        return self._size

    def _put(self, item: Any) -> None:
        if self.closed:
            raise InboxClosed
        message = item.message
        prio = message.prio if type(message) is Envelope else _MEDIUM
        self._lanes[prio].append(item)
        self._size += 1

    def _get(self) -> Any:
        self._size -= 1
        lanes = self._lanes
        for prio in (3, 2, 1, 0):
            if lanes[prio]:
                return lanes[prio].popleft()
        raise AssertionError("the inbox size said non-empty")  # pragma: no cover

    def depth(self) -> int:
        """Messages waiting, all lanes together."""
        return self._size

    def take_foreign(self) -> list[Any]:
        """Remove and return Pykka's own messages (stop requests, proxy calls), in order."""
        with self.mutex:
            return self._take(lambda item: type(item.message) is not Envelope)

    def push_front(self, envelopes: Iterable[Envelope]) -> None:
        """Put ``envelopes`` (older than everything queued) back at the head of their lanes."""
        from pykka._envelope import Envelope as PykkaEnvelope  # noqa: PLC0415 - rare path

        with self.mutex:
            for env in reversed(list(envelopes)):
                self._lanes[env.prio].appendleft(PykkaEnvelope(env))
                self._size += 1
            self.not_empty.notify()

    def close(self) -> list[Any]:
        """Refuse every later ``put``; remove and return everything queued."""
        with self.mutex:
            self.closed = True
            return self._take(lambda _item: True)

    def _take(self, match: Any) -> list[Any]:
        taken: list[Any] = []
        for lane in self._lanes:
            kept = [item for item in lane if not match(item)]
            taken.extend(item for item in lane if match(item))
            lane.clear()
            lane.extend(kept)
        self._size = sum(map(len, self._lanes))
        return taken
