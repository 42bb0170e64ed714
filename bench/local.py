"""In-process workloads: W1 local tell throughput, W2 local ask latency.

Baselines: ``pykka``, a bare ``pykka.ThreadingActor`` doing the same work (``ref.tell`` /
``ref.ask``); ``raw``, a plain ``queue.Queue`` between two threads.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pykka

from bench import others
from bench.agents import Counter, Echo
from bench.core import (
    BenchError,
    Ctx,
    Deadline,
    Figure,
    Run,
    latency_metrics,
    measure,
    payload,
    workload,
)
from macp import ChildSpec, Node, Restart, Settings

__all__ = ["w1_local_tell", "w2_local_ask"]

_ASK_TIMEOUT_S = 10.0


def _node() -> Node:
    return Node("bench", settings=Settings(strict=False)).start()


# -- W1 -----------------------------------------------------------------------------------------


def _macp_tell(n: int, deadline: Deadline) -> dict[str, float]:
    done = threading.Event()
    node = _node()
    try:
        node.start_child(ChildSpec(Counter, "counter", args=(done, n), restart=Restart.TEMPORARY))
        ref = node.ref("counter")
        tell = ref.tell
        start = time.perf_counter()
        for i in range(n):
            tell("item", payload(i))
        deadline.wait(done, f"the macp agent handled {n} tells")
        return {"msgs_per_s": n / (time.perf_counter() - start)}
    finally:
        node.stop()


class _PykkaCounter(pykka.ThreadingActor):
    def __init__(self, done: threading.Event, n: int) -> None:
        super().__init__()
        self.done = done
        self.n = n
        self.count = 0

    def on_receive(self, _message: Any) -> None:
        self.count += 1
        if self.count == self.n:
            self.done.set()


def _pykka_tell(n: int, deadline: Deadline) -> dict[str, float]:
    done = threading.Event()
    ref = _PykkaCounter.start(done, n)
    try:
        tell = ref.tell
        start = time.perf_counter()
        for i in range(n):
            tell(payload(i))
        deadline.wait(done, f"the pykka actor handled {n} tells")
        return {"msgs_per_s": n / (time.perf_counter() - start)}
    finally:
        ref.stop()


def _queue_tell(n: int, deadline: Deadline) -> dict[str, float]:
    done = threading.Event()
    q: queue.Queue[Any] = queue.Queue()

    def consume() -> None:
        get, count = q.get, 0
        while True:
            if get() is None:
                return
            count += 1
            if count == n:
                done.set()

    consumer = threading.Thread(target=consume, name="bench-queue-consumer", daemon=True)
    consumer.start()
    try:
        put = q.put
        start = time.perf_counter()
        for i in range(n):
            put(payload(i))
        deadline.wait(done, f"the consumer thread took {n} items")
        return {"msgs_per_s": n / (time.perf_counter() - start)}
    finally:
        q.put(None)
        consumer.join(5)


@workload(
    "W1",
    "local tell: N tells to one agent in this process, until handled (msgs/s)",
    budget_s=180,
    quick_budget_s=60,
)
def w1_local_tell(ctx: Ctx) -> list[Figure]:
    n = ctx.n(200_000, 100_000)
    d = ctx.deadline
    runs = [
        Run(
            "macp",
            lambda: _macp_tell(n, d),
            variant="ref.tell",
            warmup=lambda: _macp_tell(n // 10, d),
        ),
        Run("pykka", lambda: _pykka_tell(n, d), warmup=lambda: _pykka_tell(n // 10, d)),
        Run(
            "raw",
            lambda: _queue_tell(n, d),
            variant="queue",
            warmup=lambda: _queue_tell(n // 10, d),
        ),
        *others.tell_runs(ctx, n),
    ]
    return measure(ctx, runs)


# -- W2 -----------------------------------------------------------------------------------------


def _macp_ask(n: int, deadline: Deadline) -> dict[str, float]:
    node = _node()
    try:
        ref = node.spawn(Echo, "echo", restart=Restart.TEMPORARY)
        ask, clock = ref.ask, time.perf_counter_ns
        timeout_s = min(_ASK_TIMEOUT_S, deadline.remaining("starting asks"))
        latencies: list[int] = []
        for i in range(n):
            t0 = clock()
            ask("echo", payload(i), timeout_s=timeout_s).get()
            latencies.append(clock() - t0)
        return latency_metrics(latencies)
    finally:
        node.stop()


class _PykkaEcho(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


def _pykka_ask(n: int, deadline: Deadline) -> dict[str, float]:
    ref = _PykkaEcho.start()
    try:
        ask, clock = ref.ask, time.perf_counter_ns
        timeout_s = min(_ASK_TIMEOUT_S, deadline.remaining("starting asks"))
        latencies: list[int] = []
        for i in range(n):
            t0 = clock()
            ask(payload(i), timeout=timeout_s)
            latencies.append(clock() - t0)
        return latency_metrics(latencies)
    finally:
        ref.stop()


def _queue_ask(n: int, deadline: Deadline) -> dict[str, float]:
    requests: queue.Queue[Any] = queue.Queue()
    replies: queue.Queue[Any] = queue.Queue()

    def serve() -> None:
        get, put = requests.get, replies.put
        while (item := get()) is not None:
            put(item)

    server = threading.Thread(target=serve, name="bench-queue-echo", daemon=True)
    server.start()
    try:
        put, get, clock = requests.put, replies.get, time.perf_counter_ns
        timeout_s = min(_ASK_TIMEOUT_S, deadline.remaining("starting round trips"))
        latencies: list[int] = []
        for i in range(n):
            t0 = clock()
            put(payload(i))
            try:
                get(timeout=timeout_s)
            except queue.Empty:
                raise BenchError(f"the echo thread did not answer within {timeout_s:g} s") from None
            latencies.append(clock() - t0)
        return latency_metrics(latencies)
    finally:
        requests.put(None)
        server.join(5)


@workload(
    "W2",
    "local ask: N sequential asks to one agent in this process (p50/p99 us)",
    budget_s=180,
    quick_budget_s=60,
)
def w2_local_ask(ctx: Ctx) -> list[Figure]:
    n = ctx.n(20_000, 10_000)
    d = ctx.deadline
    runs = [
        Run(
            "macp",
            lambda: _macp_ask(n, d),
            variant="ref.ask",
            warmup=lambda: _macp_ask(n // 10, d),
        ),
        Run("pykka", lambda: _pykka_ask(n, d), warmup=lambda: _pykka_ask(n // 10, d)),
        Run(
            "raw",
            lambda: _queue_ask(n, d),
            variant="queue",
            warmup=lambda: _queue_ask(n // 10, d),
        ),
        *others.ask_runs(ctx, n),
    ]
    return measure(ctx, runs)
