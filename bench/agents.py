"""The macp agents the workloads run, in this process or in node processes.

Node processes load them as ``bench.agents:Name`` (the repository root is on their
``PYTHONPATH``). Agents built with constructor arguments (:class:`Counter`) are started in this
process with a :class:`~macp.ChildSpec`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import macp
from bench.core import BenchError, payload
from macp import Agent, handler

if TYPE_CHECKING:
    import threading

__all__ = ["Blaster", "Counter", "Echo", "Idle", "Pinger", "Sink"]


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
