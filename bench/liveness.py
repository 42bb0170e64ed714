"""W9 failure detection, with the default liveness settings (heartbeat 1 s, 3 misses,
acceptable pause 1 s: a peer silent for 4 s is down).

- ``detect_s``: node A (this process, default settings) and node B (a ``macp node start``
  process, default settings) heartbeat each other; 1.5 to 2.5 s (uniformly drawn) after A sees
  B up, B gets SIGKILL; the figure is the time from the kill to the ``node.down`` event
  reaching an agent of A subscribed to it (:class:`~bench.agents.PeerWatch`). One kill per
  sample, a fresh A and B each time. A killed process's connection closes at once, so A finds
  B down one heartbeat interval after that (reason ``disconnected``): about 1 to 1.25 s (one
  0.25 s liveness tick). Without the closed connection (a hung host, a cut cable) it would be
  the silence rule: 4 s after B was last heard (reason ``silent``).
- ``false_downs``: two ``macp node start`` processes (P1, P2; default settings) heartbeat each
  other while busy loops (``python -c "while True: pass"``, one per core) soak every core for
  30 s (8 s with ``--quick``); the figure is the number of ``node.down`` events either node
  reported (an agent of each, :class:`~bench.agents.DownReporter`, prints them), up to 1 s
  after the soak stopped. ``macp node ping`` checks that each node sees the other up before
  the soak and after it. One soak: its ``samples`` holds that single count.

No baseline: these are absolute targets (detection <= 3.5 s, no false downs).
"""

from __future__ import annotations

import json
import os
import queue
import random
import sys
import time
from typing import TYPE_CHECKING, Any

from bench import procs
from bench.agents import PeerWatch
from bench.core import BenchError, Ctx, Figure, Run, measure, workload
from bench.nodes import wait_up
from macp import ChildSpec, Node, Restart, Settings

if TYPE_CHECKING:
    from bench.core import Deadline

__all__ = ["w9_failure_detection"]

_SETTLE_S = (1.5, 2.5)
"""How long the link runs (heartbeats both ways) before the kill, drawn uniformly from this
range: heartbeats go out about once a second, so the kill falls at a random point between two
of them (a fixed pause would measure one phase only, every time). A point in time, not a
condition to wait for."""
_AFTER_SOAK_S = 1.0
_POLL_S = 0.05
_WATCH = "bench.agents:DownReporter"


# -- detection ----------------------------------------------------------------------------------


def _detect(ctx: Ctx) -> dict[str, float]:
    deadline = ctx.deadline
    b = procs.macp_node("B", {}, deadline)
    ctx.on_exit(b.stop)
    try:
        events: queue.SimpleQueue[tuple[str, str, str, float]] = queue.SimpleQueue()
        node = Node(
            "A",
            listen="tcp://127.0.0.1:0",
            peers={"B": b.ready["address"]},
            settings=Settings(strict=False),  # the default liveness settings
        ).start()
        try:
            node.start_child(
                ChildSpec(PeerWatch, "watch", args=(events,), restart=Restart.TEMPORARY)
            )
            wait_up(node, "B", b, deadline)
            time.sleep(random.uniform(*_SETTLE_S))
            if not b.running():
                raise BenchError("node B exited before it was killed")
            killed = time.monotonic()
            b.kill()
            while True:
                try:
                    kind, peer, reason, at = events.get(timeout=deadline.remaining("detecting"))
                except queue.Empty:
                    deadline.remaining("waiting for node.down")  # raises
                    continue
                if kind == "node.down" and peer == "B":
                    if reason not in {"silent", "disconnected"}:
                        expected = "'disconnected' or 'silent'"
                        raise BenchError(f"node.down B came with reason {reason!r}, not {expected}")
                    return {"detect_s": at - killed}
        finally:
            node.stop()
    finally:
        b.stop()


# -- false downs under a CPU soak ---------------------------------------------------------------


def _peer_states(name: str, address: str, deadline: Deadline) -> dict[str, str]:
    """What ``macp node ping --json`` says of the node's peers (name -> state)."""
    argv = [sys.executable, "-m", "macp", "node", "ping", address, "--json", "--timeout-s", "10"]
    info: dict[str, Any] = json.loads(procs.run_to_end(f"macp node ping {name}", argv, deadline))
    return {peer: str(state["state"]) for peer, state in (info.get("peers") or {}).items()}


def _check_up(p1: procs.Child, p2: procs.Child, deadline: Deadline, when: str) -> None:
    for child, name, other in ((p1, "P1", "P2"), (p2, "P2", "P1")):
        states = _peer_states(name, child.ready["address"], deadline)
        if states.get(other) != "up":
            raise BenchError(f"{when}, {name} sees {other} as {states.get(other)!r}, not 'up'")


def _collect(
    children: dict[str, procs.Child], until: float, downs: list[dict[str, Any]], deadline: Deadline
) -> None:
    """Read every child's event lines until ``until``; ``node.down`` ones go to ``downs``."""
    while time.monotonic() < until:
        deadline.remaining("soaking the CPU")
        for name, child in children.items():
            if not child.running():
                raise BenchError(f"node {name} exited during the soak")
            while (record := child.next_record(0)) is not None:
                if record.get("event") == "node.down":
                    downs.append(record)
        time.sleep(_POLL_S)


def _soak(ctx: Ctx, soak_s: float, cores: int) -> tuple[int, list[dict[str, Any]]]:
    deadline = ctx.deadline
    p1 = procs.macp_node("P1", {"watch": _WATCH}, deadline)
    ctx.on_exit(p1.stop)
    p2 = procs.macp_node("P2", {"watch": _WATCH}, deadline, "--peer", f"P1={p1.ready['address']}")
    ctx.on_exit(p2.stop)
    try:
        while True:  # P1's watcher was subscribed before P2 existed: it reports P2 up
            record = p1.next_record(deadline.remaining("waiting for P1 to see P2 up"))
            if record is None and not p1.running():
                raise BenchError("node P1 exited before it saw P2")
            if record is not None and record.get("event") == "node.up":
                break
        _check_up(p1, p2, deadline, "before the soak")
        downs: list[dict[str, Any]] = []
        soak = procs.Soak(cores)
        ctx.on_exit(soak.stop)
        try:
            soak.start()
            _collect({"P1": p1, "P2": p2}, time.monotonic() + soak_s, downs, deadline)
        finally:
            soak.stop()
        _collect({"P1": p1, "P2": p2}, time.monotonic() + _AFTER_SOAK_S, downs, deadline)
        if not downs:
            _check_up(p1, p2, deadline, "after the soak")
        return len(downs), downs
    finally:
        p2.stop()
        p1.stop()


@workload(
    "W9",
    "failure detection: kill -9 to node.down (s); false downs under a CPU soak (default settings)",
    budget_s=180,
    quick_budget_s=90,
)
def w9_failure_detection(ctx: Ctx) -> list[Figure]:
    soak_s = 8.0 if ctx.quick else 30.0
    cores = max(2, os.cpu_count() or 2)
    figures = measure(
        ctx,
        [Run("macp", lambda: _detect(ctx), variant="kill -9, heartbeat 1 s x 3 + pause 1 s")],
    )
    count, downs = _soak(ctx, soak_s, cores)
    for record in downs:
        ctx.note(f"false down: {record}")
    ctx.note(
        f"targets: detect_s <= 3.5, false_downs 0; the soak ran {cores} busy loops for "
        f"{soak_s:g} s against 2 node processes (one soak: a single sample)"
    )
    figures.append(
        Figure(
            system="macp",
            workload=ctx.workload,
            metric="false_downs",
            value=float(count),
            variant=f"{soak_s:g} s soak, {cores} busy loops",
            samples=[float(count)],
        )
    )
    return figures
