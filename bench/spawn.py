"""W6 spawn: start N agents on one node, stop them, and what each costs in memory.

Each sample runs in a fresh process (``python -m bench.spawn --system ... --n N``), so that
the RSS delta is not blurred by memory an earlier sample freed, and so that 10,000 threads do
not outlive their sample. The child prints one JSON line: ``spawn_s`` (until every agent has
run its ``on_start``), ``stop_s`` (``node.stop()``, or stopping every Pykka actor in reverse
start order) and ``rss_per_agent_kib`` (RSS after the spawn minus RSS before, over N).

macp is measured two ways: ``via=spawn`` (``node.spawn`` N times) and ``via=supervisor_spec``
(one ``start_child`` of a ``SupervisorSpec`` holding N ``ChildSpec`` s). The faster spawn of
each N is the main variant, the one ratios use; a note says which it was.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import gc
import json
import sys
import threading
import time
from typing import Any

import psutil

from bench import procs
from bench.core import BenchError, Ctx, Deadline, Figure, Run, measure, workload

__all__ = ["main", "w6_spawn"]

_VIAS = ("spawn", "supervisor_spec")


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _measure_macp(n: int, via: str, timeout_s: float) -> dict[str, float]:
    from bench.agents import Idle
    from macp import ChildSpec, Node, Settings, SupervisorSpec

    node = Node("spawn", settings=Settings(strict=False)).start()
    gc.collect()
    rss_before = _rss()
    start = time.perf_counter()
    if via == "spawn":
        for i in range(n):
            node.spawn(Idle, f"a{i}")
    else:
        children = [ChildSpec(Idle, f"a{i}") for i in range(n)]
        node.start_child(SupervisorSpec("pool", children=children))
    spawned = time.perf_counter()
    rss_after = _rss()
    running = len(node.agents())
    if running != n:
        node.stop()
        raise BenchError(f"{running} agents are running after spawning {n}")
    stop_start = time.perf_counter()
    node.stop(timeout_s=timeout_s)
    stopped = time.perf_counter()
    return {
        "spawn_s": spawned - start,
        "stop_s": stopped - stop_start,
        "rss_per_agent_kib": (rss_after - rss_before) / n / 1024,
    }


def _measure_pykka(n: int, timeout_s: float) -> dict[str, float]:
    import pykka

    lock, started, all_started = threading.Lock(), [0], threading.Event()

    class IdleActor(pykka.ThreadingActor):
        def on_start(self) -> None:
            with lock:
                started[0] += 1
                if started[0] == n:
                    all_started.set()

        def on_receive(self, message: Any) -> Any:
            return message

    gc.collect()
    rss_before = _rss()
    start = time.perf_counter()
    refs = [IdleActor.start() for _ in range(n)]
    if not all_started.wait(timeout_s):
        pykka.ActorRegistry.stop_all()
        raise BenchError(f"only {started[0]} of {n} pykka actors started within {timeout_s} s")
    spawned = time.perf_counter()
    rss_after = _rss()
    stop_start = time.perf_counter()
    for ref in reversed(refs):
        ref.stop(block=True, timeout=timeout_s)
    stopped = time.perf_counter()
    return {
        "spawn_s": spawned - start,
        "stop_s": stopped - stop_start,
        "rss_per_agent_kib": (rss_after - rss_before) / n / 1024,
    }


def _sample(system: str, via: str, n: int, deadline: Deadline) -> dict[str, float]:
    timeout_s = deadline.remaining(f"spawning {n} {system} actors")
    argv = [sys.executable, "-m", "bench.spawn", "--system", system, "--n", str(n)]
    argv += ["--via", via, "--timeout-s", f"{timeout_s:.1f}"]
    out = procs.run_to_end(f"W6 {system} n={n}", argv, deadline)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"the W6 child printed no result: {out!r:.300}")
    result: dict[str, float] = json.loads(lines[-1])
    return result


@workload(
    "W6",
    "spawn: start and stop N agents on one node; RSS per agent",
    budget_s=600,
    quick_budget_s=90,
)
def w6_spawn(ctx: Ctx) -> list[Figure]:
    counts = [1_000] if ctx.quick else [1_000, 5_000, 10_000]
    d = ctx.deadline
    runs: list[Run] = []
    for n in counts:
        group = f"n={n}"
        for system, via in (("macp", "spawn"), ("macp", "supervisor_spec"), ("pykka", "-")):
            fn = functools.partial(_sample, system, via, n, d)
            if system == "macp":
                runs.append(Run(system, fn, variant=f"{group} via={via}", group=group, main=False))
            else:
                runs.append(Run(system, fn, variant=group, group=group))
    figures = measure(ctx, runs)
    for n in counts:
        group = f"n={n}"
        spawn = {
            f.variant.rpartition("via=")[2]: f
            for f in figures
            if f.system == "macp" and f.group == group and f.metric == "spawn_s"
        }
        best = min(spawn, key=lambda via: spawn[via].value)
        medians = ", ".join(f"via={v} {spawn[v].value:.3f} s" for v in spawn)
        ctx.note(f"{group}: the main macp variant is via={best} (median spawn_s: {medians})")
        for f in figures:
            if f.system == "macp" and f.group == group:
                f.main = f.variant.endswith(f"via={best}")
    return figures


def main() -> None:
    """One W6 sample in this (fresh) process; prints its metrics as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.spawn")
    parser.add_argument("--system", choices=("macp", "pykka"), required=True)
    parser.add_argument("--via", choices=(*_VIAS, "-"), default="spawn")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, required=True)
    args = parser.parse_args()
    from macp.log import configure_logging

    configure_logging(level="warning")
    faulthandler.dump_traceback_later(args.timeout_s, exit=True)  # never outlive the budget
    if args.system == "macp":
        result = _measure_macp(args.n, args.via, args.timeout_s)
    else:
        result = _measure_pykka(args.n, args.timeout_s)
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
