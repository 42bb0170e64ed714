"""Failure detection between nodes: heartbeats and silence (the Paranoid Pirate pattern).

Any traffic from a peer counts as a heartbeat. A peer is *down* after ``misses`` silent
heartbeat intervals plus ``acceptable_pause_s`` (so a briefly stalled host does not flap its
peers to down), and *up* again at the first traffic after that. A peer whose connection
closed (its process died: the operating system closes its sockets) and that stays silent for
one more interval is down sooner: a stalled but living peer keeps its connection, so this
never flaps a busy host. A peer that announces another
incarnation (it restarted faster than it could be found down) goes down and up at once, so
everything that depended on the old process is cleaned up.

This is a pure state machine driven by the I/O thread with explicit times; it touches nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

__all__ = ["Liveness", "PeerEvent", "PeerState"]


class PeerState(StrEnum):
    JOINING = "joining"  # known, never heard from yet
    UP = "up"
    DOWN = "down"


class PeerEvent(NamedTuple):
    """A change of a peer's state: ``kind`` is ``"node.up"`` or ``"node.down"``."""

    kind: str
    node: str
    reason: str


@dataclass
class Liveness:
    """Peers' states from the traffic seen and the time passed.

    Args:
        interval_s: the heartbeat interval.
        misses: silent intervals before a peer is down.
        acceptable_pause_s: extra silence tolerated.
    """

    interval_s: float
    misses: int
    acceptable_pause_s: float
    _last_seen: dict[str, float] = field(default_factory=dict)
    _states: dict[str, PeerState] = field(default_factory=dict)
    _incarnations: dict[str, str] = field(default_factory=dict)
    _disconnected: dict[str, float] = field(default_factory=dict)

    @property
    def threshold_s(self) -> float:
        """Silence after which a peer is down."""
        return self.misses * self.interval_s + self.acceptable_pause_s

    def add(self, node: str) -> None:
        """Start tracking ``node`` (no event until it is heard from)."""
        self._states.setdefault(node, PeerState.JOINING)

    def remove(self, node: str) -> None:
        for table in (self._last_seen, self._states, self._incarnations, self._disconnected):
            table.pop(node, None)

    def disconnected(self, node: str, now: float) -> None:
        """The connection to ``node`` closed (not yet a verdict: it may come right back)."""
        self._disconnected.setdefault(node, now)

    def connected(self, node: str) -> None:
        self._disconnected.pop(node, None)

    def state(self, node: str) -> PeerState | None:
        return self._states.get(node)

    def states(self) -> dict[str, PeerState]:
        return dict(self._states)

    def last_seen(self, node: str) -> float | None:
        return self._last_seen.get(node)

    def snapshot(self, now: float, addresses: dict[str, str]) -> dict[str, dict[str, object]]:
        """Each peer's address, state and seconds since it was last heard."""
        result: dict[str, dict[str, object]] = {}
        for node, state in self._states.items():
            seen = self._last_seen.get(node)
            result[node] = {
                "address": addresses.get(node),
                "state": state.value,
                "last_seen_s": None if seen is None else round(now - seen, 3),
            }
        return result

    def seen(self, node: str, now: float, incarnation: str | None = None) -> list[PeerEvent]:
        """Record traffic from ``node`` at ``now``; the events it causes."""
        self._last_seen[node] = now
        self._disconnected.pop(node, None)
        events: list[PeerEvent] = []
        if incarnation is not None:
            known = self._incarnations.get(node)
            self._incarnations[node] = incarnation
            if (
                known is not None
                and known != incarnation
                and self._states.get(node) is PeerState.UP
            ):
                events.append(PeerEvent("node.down", node, "restarted"))
                self._states[node] = PeerState.DOWN
        if self._states.get(node) is not PeerState.UP:
            self._states[node] = PeerState.UP
            events.append(PeerEvent("node.up", node, "heard"))
        return events

    def left(self, node: str) -> list[PeerEvent]:
        """``node`` said goodbye (a clean shutdown): down at once."""
        if self._states.get(node) is PeerState.UP:
            self._states[node] = PeerState.DOWN
            self._incarnations.pop(node, None)
            return [PeerEvent("node.down", node, "left")]
        return []

    def check(self, now: float) -> list[PeerEvent]:
        """The peers found down by ``now`` (each reported once)."""
        limit = now - self.threshold_s
        events = []
        for node, state in self._states.items():
            if state is not PeerState.UP:
                continue
            seen = self._last_seen.get(node, now)
            closed = self._disconnected.get(node)
            if seen < limit:
                reason = "silent"
            elif closed is not None and now - max(closed, seen) > self.interval_s:
                reason = "disconnected"
            else:
                continue
            self._states[node] = PeerState.DOWN
            self._incarnations.pop(node, None)  # whoever comes back is a new incarnation
            events.append(PeerEvent("node.down", node, reason))
        return events
