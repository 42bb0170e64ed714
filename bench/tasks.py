"""The coordinator: W7 task throughput and latency (W8 is in :mod:`bench.workflow`).

**W7.** N trivial tasks (``noop``, a :class:`~bench.agents.Noop` agent answering ``None``) go
through the coordinator, journal on (a SQLite file in a temporary directory), over 100 agents
with ``max_in_flight`` 4 each. Submits are concurrent, from one driver thread: it keeps
:data:`WINDOW` tasks (100 agents x 4) outstanding, each a ``coordinator.submit`` ask and, once
that answers with the task id, a ``coordinator.result`` ask, both sent with
``node.ask(f"coordinator@{head}", ...)`` without waiting; the futures' callbacks hand the
answers back to the driver. Latency is from the submit call to the result's arrival (in the
callback), so it includes the time a task waits in the window: with every agent busy it is
about ``WINDOW / tasks_per_s``. Two macp variants:

- ``local``: the head node, its control plane and the 100 agents in this process;
- ``2 nodes``: the head (control plane, and the driver) in this process, the 100 agents on
  node B, a ``macp node start --head A`` process.

Each sample starts a fresh head (and node B) with an empty journal, runs an untimed warm-up of
N / 10 tasks, then the N timed ones, and stops them: the coordinator keeps every task it ran
in memory and in the journal, so reusing one would make each sample slower than the last.

Baseline ``pykka``: a bare-Pykka "coordinator", one ``ThreadingActor`` routing each task to
one of 100 worker actors (at most 4 in flight each, the rest queued FIFO), which tell it the
result; the client's callback runs when the router has it. No journal, no retries, no
registry, one message per submit (macp needs two asks): it is the floor a Pykka-based
coordinator could reach, driven by the same windowed driver.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any

import pykka

from bench.agents import Noop
from bench.core import (
    BenchError,
    BenchTimeout,
    Ctx,
    Deadline,
    Figure,
    Run,
    measure,
    payload,
    percentile,
    workload,
)
from bench.nodes import (
    head_node,
    journal_dir,
    peer_process,
    wait_registered,
    wait_up,
    worker_names,
)
from macp import Cluster, Node, Wire

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["AGENTS", "ASK_TIMEOUT_S", "MAX_IN_FLIGHT", "WINDOW", "drive_tasks", "w7_coordinator"]

AGENTS = 100
MAX_IN_FLIGHT = 4
WINDOW = AGENTS * MAX_IN_FLIGHT
"""Tasks the W7 driver keeps outstanding: enough to keep every agent's 4 slots busy."""

_SUBMIT = "coordinator.submit"
_RESULT = "coordinator.result"
ASK_TIMEOUT_S = 60.0
_LOCAL = "local"
_REMOTE = "2 nodes"


def _task_spec(i: int) -> dict[str, Wire]:
    return {"type": "noop", "body": payload(i)}


def _latency_ms(latencies_ns: list[int]) -> dict[str, float]:
    ordered = sorted(latencies_ns)
    return {
        "p50_ms": percentile(ordered, 50) / 1e6,
        "p99_ms": percentile(ordered, 99) / 1e6,
    }


def _next(events: queue.SimpleQueue[Any], deadline: Deadline, doing: str) -> Any:
    try:
        return events.get(timeout=deadline.remaining(doing))
    except queue.Empty:
        deadline.remaining(doing)  # raises
        raise BenchTimeout(f"{deadline.what}: timed out while {doing}") from None


# -- the macp driver ----------------------------------------------------------------------------


def drive_tasks(
    node: Node, head: str, n: int, window: int, deadline: Deadline
) -> tuple[float, list[int]]:
    """Run ``n`` tasks through ``coordinator@head``, at most ``window`` outstanding; the
    elapsed seconds and each task's submit-to-result time in ns."""
    coordinator = f"coordinator@{head}"
    events: queue.SimpleQueue[tuple[int, bool, Any, int]] = queue.SimpleQueue()
    clock = time.perf_counter_ns

    def submitted(i: int, future: Any) -> None:
        events.put((i, False, future, 0))

    def finished(i: int, future: Any) -> None:
        events.put((i, True, future, clock()))

    timeout_s = min(ASK_TIMEOUT_S, deadline.remaining("submitting tasks"))
    started = [0] * n
    latencies: list[int] = []
    ask = node.ask
    issued = done = 0
    start = time.perf_counter()
    while done < n:
        while issued - done < window and issued < n:
            i = issued
            issued += 1
            started[i] = clock()
            future = ask(coordinator, _SUBMIT, _task_spec(i), timeout_s=timeout_s)
            future.add_done_callback(partial(submitted, i))
        i, final, future, at = _next(events, deadline, f"waiting for task {done + 1} of {n}")
        error = future.exception()
        if error is not None:
            stage = "result" if final else "submit"
            raise BenchError(f"task {i}: {stage} failed: {type(error).__name__}: {error}")
        if final:
            latencies.append(at - started[i])
            done += 1
        else:
            body = {"task_id": future.result()["task_id"]}
            ask(coordinator, _RESULT, body, timeout_s=timeout_s).add_done_callback(
                partial(finished, i)
            )
    return time.perf_counter() - start, latencies


def _throughput(n: int, elapsed: float, latencies: list[int]) -> dict[str, float]:
    return {"tasks_per_s": n / elapsed, **_latency_ms(latencies)}


class _Samples:
    """Numbers each sample's journal file, so that every sample starts from an empty one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._count = itertools.count()

    def journal(self, label: str) -> Path:
        return self.directory / f"{label}-{next(self._count)}.sqlite3"


def _macp_local(samples: _Samples, n: int, deadline: Deadline) -> dict[str, float]:
    node = head_node("head", samples.journal("local"), max_in_flight=MAX_IN_FLIGHT)
    try:
        for name in worker_names(AGENTS):
            node.spawn(Noop, name)
        addresses = [f"{name}@head" for name in worker_names(AGENTS)]
        wait_registered(Cluster(node), addresses, deadline)
        drive_tasks(node, "head", max(1, n // 10), WINDOW, deadline)  # warm-up
        return _throughput(n, *drive_tasks(node, "head", n, WINDOW, deadline))
    finally:
        node.stop()


def _macp_remote(ctx: Ctx, samples: _Samples, n: int) -> dict[str, float]:
    deadline = ctx.deadline
    node = head_node(
        "A",
        samples.journal("remote"),
        listen="tcp://127.0.0.1:0",
        max_in_flight=MAX_IN_FLIGHT,
    )
    try:
        agents = dict.fromkeys(worker_names(AGENTS), "bench.agents:Noop")
        b = peer_process(ctx, "B", agents, "--peer", f"A={node.address}", "--head", "A")
        try:
            wait_up(node, "B", b, deadline)
            addresses = [f"{name}@B" for name in worker_names(AGENTS)]
            wait_registered(Cluster(node), addresses, deadline)
            drive_tasks(node, "A", max(1, n // 10), WINDOW, deadline)  # warm-up
            return _throughput(n, *drive_tasks(node, "A", n, WINDOW, deadline))
        finally:
            b.stop()
    finally:
        node.stop()


# -- the Pykka baseline -------------------------------------------------------------------------


class _PykkaWorker(pykka.ThreadingActor):
    def __init__(self, router: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self.router = router

    def on_receive(self, message: Any) -> None:
        _, task_id, _body = message
        self.router.tell(("done", task_id, None, self.actor_ref))


class _PykkaRouter(pykka.ThreadingActor):
    """Routes each task to a worker with a free slot (``max_in_flight`` per worker, taken in
    turn), queues it when none has; calls the submitter's callback with the result."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: deque[pykka.ActorRef[Any]] = deque()
        self.queue: deque[tuple[int, Any]] = deque()
        self.waiting: dict[int, Callable[[Any], None]] = {}

    def on_receive(self, message: Any) -> None:
        kind = message[0]
        if kind == "submit":
            _, task_id, body, callback = message
            self.waiting[task_id] = callback
            if self.slots:
                self.slots.popleft().tell(("run", task_id, body))
            else:
                self.queue.append((task_id, body))
        elif kind == "done":
            _, task_id, result, worker = message
            self.waiting.pop(task_id)(result)
            if self.queue:
                next_id, body = self.queue.popleft()
                worker.tell(("run", next_id, body))
            else:
                self.slots.append(worker)
        elif kind == "workers":
            workers = message[1]
            self.slots.extend(w for _ in range(MAX_IN_FLIGHT) for w in workers)


def _pykka_router(ctx: Ctx) -> pykka.ActorRef[Any]:
    router = _PykkaRouter.start()
    workers = [_PykkaWorker.start(router) for _ in range(AGENTS)]
    router.tell(("workers", workers))

    def stop() -> None:
        refs: list[pykka.ActorRef[Any]] = [router, *workers]
        for ref in refs:
            ref.stop()

    ctx.on_exit(stop)
    return router


def _pykka_tasks(router: pykka.ActorRef[Any], n: int, deadline: Deadline) -> dict[str, float]:
    events: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
    clock = time.perf_counter_ns

    def finished(i: int, _result: Any) -> None:
        events.put((i, clock()))

    started = [0] * n
    latencies: list[int] = []
    tell = router.tell
    issued = done = 0
    start = time.perf_counter()
    while done < n:
        while issued - done < WINDOW and issued < n:
            i = issued
            issued += 1
            started[i] = clock()
            tell(("submit", i, payload(i), partial(finished, i)))
        i, at = _next(events, deadline, f"waiting for pykka task {done + 1} of {n}")
        latencies.append(at - started[i])
        done += 1
    return _throughput(n, time.perf_counter() - start, latencies)


@workload(
    "W7",
    "coordinator: N trivial tasks over 100 agents, journal on, submitted concurrently "
    "(tasks/s, submit-to-result p50/p99 ms)",
    budget_s=300,
    quick_budget_s=90,
)
def w7_coordinator(ctx: Ctx) -> list[Figure]:
    n = ctx.n(10_000, 3_000)
    d = ctx.deadline
    samples = _Samples(journal_dir(ctx))
    router = _pykka_router(ctx)
    ctx.note(
        f"{n} tasks per sample, {WINDOW} outstanding (100 agents x max_in_flight "
        f"{MAX_IN_FLIGHT}); each macp sample starts a fresh head with an empty journal and "
        "warms up with N/10 tasks; '2 nodes': head, control plane and driver in this process, "
        "the agents on node B (a process)"
    )
    ctx.note("reference, not measured: Ray's 1,300 tasks/s (from the issue text)")
    runs = [
        Run("macp", lambda: _macp_local(samples, n, d), variant=_LOCAL, group=_LOCAL),
        Run(
            "pykka",
            lambda: _pykka_tasks(router, n, d),
            variant=f"{_LOCAL}, router actor, no journal",
            group=_LOCAL,
            warmup=lambda: _pykka_tasks(router, max(1, n // 10), d),
        ),
        Run("macp", lambda: _macp_remote(ctx, samples, n), variant=_REMOTE, group=_REMOTE),
    ]
    return measure(ctx, runs)
