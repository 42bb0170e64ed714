"""The workflow engine: W8 per-step cost.

**W8.** The workflow engine's cost per step, on a 100-step chain (each step depends on the
previous one) and a 100-wide fan-out (100 independent steps, strategy ``parallel``), trivial
``noop`` steps, against plain coordinator tasks measured the same way in the same sample: for
the chain, 100 tasks one after the other (``cluster.submit(...).result()``); for the fan-out,
100 tasks submitted at once and then awaited. ``ms_per_step`` is the workflow's wall time
(``cluster.run`` to ``result()``) over its steps, ``ms_per_task`` the tasks' wall time over
their count, ``step_vs_task`` their ratio (a sample's own pair, then the median).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from bench.agents import Noop
from bench.core import BenchError, Ctx, Deadline, Figure, Run, measure, payload, workload
from bench.nodes import head_node, journal_dir, wait_registered, worker_names
from bench.tasks import AGENTS, ASK_TIMEOUT_S, MAX_IN_FLIGHT, drive_tasks
from macp import Cluster, Node

__all__ = ["w8_workflow"]

_STEPS = 100


def _chain() -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "noop"}]
    steps += [
        {"id": f"s{i}", "type": "noop", "depends_on": [f"s{i - 1}"]} for i in range(1, _STEPS)
    ]
    return {"name": "chain", "strategy": "parallel", "steps": steps}


def _fanout() -> dict[str, Any]:
    steps = [{"id": f"s{i}", "type": "noop"} for i in range(_STEPS)]
    return {"name": "fanout", "strategy": "parallel", "steps": steps}


def _workflow_s(cluster: Cluster, definition: dict[str, Any], deadline: Deadline) -> float:
    timeout_s = deadline.remaining(f"running workflow {definition['name']}")
    start = time.perf_counter()
    result = cluster.run(definition, payload(0)).result(timeout_s=timeout_s)
    elapsed = time.perf_counter() - start
    sinks = 1 if definition["name"] == "chain" else _STEPS
    if not isinstance(result, dict) or len(result) != sinks:
        raise BenchError(f"workflow {definition['name']} answered {result!r:.200}")
    return elapsed


def _sequential_tasks_s(cluster: Cluster, deadline: Deadline) -> float:
    timeout_s = min(ASK_TIMEOUT_S, deadline.remaining("running tasks one at a time"))
    start = time.perf_counter()
    for i in range(_STEPS):
        cluster.submit("noop", payload(i)).result(timeout_s=timeout_s)
    return time.perf_counter() - start


def _steps(
    node: Node, cluster: Cluster, shape: str, reps: int, deadline: Deadline
) -> dict[str, float]:
    definition = _chain() if shape == "chain" else _fanout()
    tasks_s = workflow_s = 0.0
    for _ in range(reps):
        if shape == "chain":
            tasks_s += _sequential_tasks_s(cluster, deadline)
        else:
            tasks_s += drive_tasks(node, node.name, _STEPS, _STEPS, deadline)[0]
        workflow_s += _workflow_s(cluster, definition, deadline)
    count = reps * _STEPS
    per_step, per_task = workflow_s / count * 1000, tasks_s / count * 1000
    return {"ms_per_step": per_step, "ms_per_task": per_task, "step_vs_task": per_step / per_task}


@workload(
    "W8",
    "workflow: per-step cost of a 100-step chain and a 100-wide fan-out, next to plain "
    "coordinator tasks (ms/step)",
    budget_s=300,
    quick_budget_s=60,
)
def w8_workflow(ctx: Ctx) -> list[Figure]:
    reps = ctx.n(10, 3)
    d = ctx.deadline
    node = head_node("wf", journal_dir(ctx) / "workflows.sqlite3", max_in_flight=MAX_IN_FLIGHT)
    ctx.on_exit(node.stop)
    for name in worker_names(AGENTS):
        node.spawn(Noop, name)
    cluster = Cluster(node, timeout_s=ASK_TIMEOUT_S)
    wait_registered(cluster, [f"{name}@wf" for name in worker_names(AGENTS)], d)
    ctx.note(
        f"each sample: {reps} workflows of {_STEPS} steps and {reps} x {_STEPS} plain tasks, "
        f"alternating; {AGENTS} agents, max_in_flight {MAX_IN_FLIGHT}, journal on"
    )
    runs = [
        Run(
            "macp",
            partial(_steps, node, cluster, shape, reps, d),
            variant=f"{shape}{_STEPS}",
            group=f"{shape}{_STEPS}",
            warmup=partial(_steps, node, cluster, shape, 1, d),
        )
        for shape in ("chain", "fanout")
    ]
    return measure(ctx, runs)
