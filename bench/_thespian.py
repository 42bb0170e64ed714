"""The Thespian actor of ``--peers`` (a module of its own: Thespian imports actor classes by
name in its worker processes, and this module is only imported when Thespian is installed)."""

from __future__ import annotations

from typing import Any

from thespian.actors import Actor

__all__ = ["Counter"]


class Counter(Actor):  # type: ignore[misc]
    """Counts messages; answers ``"drain"`` with the count (and starts again from 0) and
    ``["echo", body]`` with ``body``."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - Thespian's name
        if message == "drain":
            self.send(sender, self.count)
            self.count = 0
        elif isinstance(message, list) and message and message[0] == "echo":
            self.send(sender, message[1])
        elif isinstance(message, dict):
            self.count += 1
