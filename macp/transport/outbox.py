"""The hand-over from any thread to the I/O thread: a queue plus a wake-up many may share.

Writers put on a ``SimpleQueue`` and, if the I/O thread is not already due to look, write one
byte to a ``socketpair`` whose other end sits in the I/O thread's poller (a zmq socket could not
be shared by many writers). The reader clears the signal *before* draining, so an item put
during a drain is either taken by that drain or signals again: nothing is left waiting.
"""

from __future__ import annotations

import contextlib
import queue
import socket
from typing import Generic, TypeVar

__all__ = ["Outbox"]

T = TypeVar("T")


class Outbox(Generic[T]):
    """A many-writers, one-reader queue with a pollable file descriptor."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)  # noqa: FBT003 - the socket API
        self._writer.setblocking(False)  # noqa: FBT003
        self._signalled = False

    def fileno(self) -> int:
        """The descriptor that becomes readable when there is something to take."""
        return self._reader.fileno()

    def put(self, item: T) -> None:
        """Queue ``item`` (any thread; never blocks)."""
        self._queue.put(item)
        if not self._signalled:
            self._signalled = True
            self.wake()

    def wake(self) -> None:
        """Make the descriptor readable (also used to stop the reader)."""
        # A full buffer means the reader is due to look anyway; a closed pair, that it stopped.
        with contextlib.suppress(OSError):
            self._writer.send(b"\0")

    def take(self, limit: int) -> list[T]:
        """Clear the signal, then take up to ``limit`` items (the reader's thread only); if
        more are left, signal again, so that the reader comes back for them at once."""
        with contextlib.suppress(BlockingIOError):
            self._reader.recv(65536)
        self._signalled = False
        items: list[T] = []
        get = self._queue.get_nowait
        for _ in range(limit):
            try:
                items.append(get())
            except queue.Empty:
                return items
        if not self._queue.empty():  # more than the limit: look again without being woken
            self._signalled = True
            self.wake()
        return items

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
