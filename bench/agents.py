"""The macp agents the workloads run, in this process or in node processes.

Node processes load them as ``bench.agents:Name`` (the repository root is on their
``PYTHONPATH``). Agents built with constructor arguments (:class:`Counter`) are started in this
process with a :class:`~macp.ChildSpec`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import macp
from bench.core import BenchError, payload
from macp import Agent, handler

if TYPE_CHECKING:
    import queue
    import threading

__all__ = [
    "Blaster",
    "Counter",
    "DownReporter",
    "Echo",
    "Hub",
    "Idle",
    "Noop",
    "PeerWatch",
    "Pinger",
    "Sink",
]


class Counter(Agent):
    """Counts ``item`` tells; sets ``done`` on the ``n``-th."""

    def __init__(self, done: threading.Event, n: int) -> None:
        super().__init__()
        self.done = done
        self.n = n
        self.count = 0

    @handler("item")
    def item(self, _body: macp.Wire) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


class Echo(Agent):
    """Answers ``echo`` with the body it was given."""

    @handler("echo")
    def echo(self, body: macp.Wire) -> macp.Wire:
        return body


class Sink(Agent):
    """Counts ``item`` tells; ``drain`` answers the count so far and starts again from 0.

    Tells from one sender arrive in order, so a ``drain`` asked by the sender after its tells
    is handled after all of them: the answer says how many arrived.
    """

    def on_start(self) -> None:
        self.count = 0

    @handler("item")
    def item(self, _body: macp.Wire) -> None:
        self.count += 1

    @handler("drain")
    def drain(self, _body: macp.Wire) -> int:
        count, self.count = self.count, 0
        return count


class Blaster(Agent):
    """``blast`` tells ``n`` payloads to ``to``, then drains it; the elapsed seconds."""

    @handler("blast")
    def blast(self, body: dict[str, Any]) -> float:
        to, n, timeout_s = body["to"], body["n"], body["timeout_s"]
        tell = self.tell
        start = time.perf_counter()
        for i in range(n):
            tell(to, "item", payload(i))
        arrived = self.ask(to, "drain", timeout_s=timeout_s).get()
        elapsed = time.perf_counter() - start
        if arrived != n:
            raise BenchError(f"{to} received {arrived} of {n} messages")
        return elapsed


class Pinger(Agent):
    """``ping`` asks ``to`` ``echo`` ``n`` times in sequence; each round trip in ns."""

    @handler("ping")
    def ping(self, body: dict[str, Any]) -> list[int]:
        to, n, timeout_s = body["to"], body["n"], body["timeout_s"]
        ask, clock = self.ask, time.perf_counter_ns
        latencies: list[int] = []
        for i in range(n):
            t0 = clock()
            ask(to, "echo", payload(i), timeout_s=timeout_s).get()
            latencies.append(clock() - t0)
        return latencies


class Idle(Agent):
    """Does nothing: the agent W6 spawns by the thousand."""

    @handler("ping")
    def ping(self, _body: macp.Wire) -> str:
        return "pong"


class Noop(Agent):
    """The trivial task of W7 and W8: ``noop`` answers ``None``."""

    @handler("noop")
    def noop(self, _body: macp.Wire) -> None:
        return None


class Hub(Agent):
    """``scatter``: ``rounds`` times, ask ``echo`` of every agent in ``targets`` at once (one
    payload each) and wait for every reply; the elapsed seconds."""

    @handler("scatter")
    def scatter(self, body: dict[str, Any]) -> float:
        targets, rounds, timeout_s = body["targets"], body["rounds"], body["timeout_s"]
        ask = self.ask
        start = time.perf_counter()
        for r in range(rounds):
            base = r * len(targets)
            futures = [
                ask(t, "echo", payload(base + i), timeout_s=timeout_s)
                for i, t in enumerate(targets)
            ]
            for future in futures:
                future.get()
        return time.perf_counter() - start


class PeerWatch(Agent):
    """Puts ``(event, node, reason, time.monotonic())`` on ``events`` for every ``node.up`` and
    ``node.down`` of its node (W9, in the benchmark process)."""

    def __init__(self, events: queue.SimpleQueue[tuple[str, str, str, float]]) -> None:
        super().__init__()
        self.events = events

    def on_start(self) -> None:
        self.subscribe("node.up", "node.down")

    @handler("node.up")
    def up(self, body: dict[str, Any]) -> None:
        self.events.put(("node.up", body["node"], body["reason"], time.monotonic()))

    @handler("node.down")
    def down(self, body: dict[str, Any]) -> None:
        self.events.put(("node.down", body["node"], body["reason"], time.monotonic()))


class DownReporter(Agent):
    """Prints one JSON line on standard output for every ``node.up`` and ``node.down`` of its
    node (W9, in ``macp node start`` processes; the benchmark reads their standard output)."""

    def on_start(self) -> None:
        self.subscribe("node.up", "node.down")
        self._print({"event": "watch.ready", "node": self.node.name})

    @staticmethod
    def _print(record: dict[str, Any]) -> None:
        # One write per line: print() writes the text and its newline apart, so a line printed
        # by another thread (node.ready, from the CLI) could land between them, and the
        # benchmark would read one broken line and miss both records.
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()

    @handler("node.up")
    def up(self, body: dict[str, Any]) -> None:
        self._print({"event": "node.up", "at": self.node.name, **body})

    @handler("node.down")
    def down(self, body: dict[str, Any]) -> None:
        self._print({"event": "node.down", "at": self.node.name, **body})
