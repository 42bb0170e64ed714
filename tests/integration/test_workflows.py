"""Workflows through the coordinator: definitions, strategies (checked from the order in which
agents really started and ended steps), failure policies, retries, pause, resume, cancel."""

from __future__ import annotations

import itertools
import re
import threading
from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER

import macp
from macp import Cluster, Context, handler
from macp.testing import LocalCluster, Probe, ProbedAgent, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable


pytestmark = pytest.mark.integration


class Overlap:
    """Counts steps running at once; each waits (bounded) for ``want`` to be running."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.running = 0
        self.most = 0
        self.want = 1
        self.wait_s = 0.0

    def enter(self) -> None:
        with self.cond:
            self.running += 1
            self.most = max(self.most, self.running)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.running >= self.want, self.wait_s)

    def leave(self) -> None:
        with self.cond:
            self.running -= 1


@pytest.fixture
def overlap() -> Overlap:
    return Overlap()


class Stepper(ProbedAgent):
    """Runs any step: records its start and end, and returns what it got."""

    def __init__(self, *args: Any, overlap: Overlap, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.overlap = overlap

    @handler("step")
    def step(self, body: Any, ctx: Context) -> Any:
        name = body.get("name", "?") if isinstance(body, dict) else "?"
        self.probe.record(("start", name))
        self.overlap.enter()
        try:
            if isinstance(body, dict) and body.get("gate"):
                self.probe.wait_open(timeout_s=10)
            if isinstance(body, dict) and body.get("fail_until", 0) > ctx.attempt:
                raise RuntimeError(f"{name} fails on attempt {ctx.attempt}")
            return {"name": name, "got": body}
        finally:
            self.overlap.leave()
            self.probe.record(("end", name))


def _step(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "deps": {d: f"${{deps.{d}}}" for d in deps}, **extra.pop("body", {})}
    return {"id": name, "type": "step", "depends_on": list(deps), "body": body, **extra}


DIAMOND = {
    "name": "diamond",
    "steps": [_step("a"), _step("b", "a"), _step("c", "a"), _step("d", "b", "c")],
}


@pytest.fixture
def cluster(probe: Probe, overlap: Overlap, local_cluster: Callable[..., LocalCluster]) -> Cluster:
    local = local_cluster(settings=QUICK_CLUSTER, pools={"cpu": 2})
    for i in range(6):
        local.spawn("head", Stepper, f"s{i}", probe=probe, overlap=overlap)
    return local.cluster


def _times(events: list[Any]) -> dict[str, tuple[int, int]]:
    """Each step's start and end: where they stand among the events."""
    starts = {e[1]: i for i, e in enumerate(events) if e[0] == "start"}
    ends = {e[1]: i for i, e in enumerate(events) if e[0] == "end"}
    return {name: (starts[name], ends[name]) for name in starts}


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"name": "w", "steps": [_step("a", "c"), _step("b", "a"), _step("c", "b")]},
         "the steps form a cycle: a -> c -> b -> a"),
        ({"name": "w", "steps": [_step("a"), _step("b", "ghost")]},
         "step 'b' depends on 'ghost', which is not a step"),
        ({"name": "w", "steps": [_step("a"), _step("a")]},
         "two steps have the id 'a'; step ids must be unique"),
        ({"name": "w", "steps": [_step("a", on_failure="fallback:nope")]},
         "step 'a' falls back to 'nope', which is not a step"),
        ({"name": "w", "strategy": "random", "steps": [_step("a")]},
         "'strategy' must be one of sequential, parallel, priority, resource-aware, adaptive"),
    ],
)  # fmt: skip
def test_a_bad_definition_is_refused_naming_the_steps(
    cluster: Cluster, definition: dict[str, Any], message: str
) -> None:
    with pytest.raises(macp.InvalidParams, match=f"^workflow 'w': {message}"):
        cluster.define(definition)


@pytest.mark.parametrize(
    "strategy", ["sequential", "parallel", "priority", "resource-aware", "adaptive"]
)
def test_the_diamond_respects_its_dependencies_under_every_strategy(
    probe: Probe, cluster: Cluster, strategy: str
) -> None:
    cluster.define(DIAMOND)
    result = cluster.run("diamond", {"x": 1}, strategy=strategy).result()
    got = result["d"]["got"]
    assert got["deps"]["b"]["name"] == "b"
    assert got["deps"]["c"]["name"] == "c"
    t = _times(probe.events)
    assert t["a"][1] < t["b"][0]
    assert t["a"][1] < t["c"][0]
    assert max(t["b"][1], t["c"][1]) < t["d"][0]


def test_a_step_without_a_body_gets_the_input_and_its_dependencies_outputs(
    cluster: Cluster,
) -> None:
    definition = {"name": "plain", "steps": [
        {"id": "a", "type": "step", "body": {"name": "a"}},
        {"id": "b", "type": "step", "depends_on": ["a"]},
    ]}  # fmt: skip
    result = cluster.run(definition, {"doc": 7}).result()
    a = {"name": "a", "got": {"name": "a"}}
    assert result == {"b": {"name": "?", "got": {"input": {"doc": 7}, "deps": {"a": a}}}}


FAN = {"name": "fan", "steps": [_step(f"f{i}") for i in range(6)]}


def test_parallel_overlaps_independent_steps_up_to_max_concurrency(
    overlap: Overlap, cluster: Cluster
) -> None:
    overlap.want, overlap.wait_s = 3, 5.0
    cluster.run(FAN, strategy="parallel", max_concurrency=3).result()
    assert overlap.most == 3


def test_sequential_never_overlaps(overlap: Overlap, probe: Probe, cluster: Cluster) -> None:
    overlap.want, overlap.wait_s = 2, 0.05
    cluster.run(FAN, strategy="sequential").result()
    assert overlap.most == 1
    t = _times(probe.events)
    spans = sorted(t.values())
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))


def test_resource_aware_never_exceeds_a_pool(overlap: Overlap, cluster: Cluster) -> None:
    overlap.want, overlap.wait_s = 2, 5.0
    steps = [_step(f"r{i}", resources={"cpu": 1}) for i in range(6)]
    run = cluster.run({"name": "pool", "steps": steps}, strategy="resource-aware")
    run.result()
    assert overlap.most == 2  # the pool holds 2 cpu; the run's steps need 1 each
    assert cluster.resources("usage")["cpu"]["allocated"] == 0


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        ({"cpu": 1, "gpu": 1}, "'gpu' is not a pool"),
        ({"cpu": 3}, "'cpu' has a capacity of 2, less than 3"),
    ],
    ids=["undeclared", "over-capacity"],
)
def test_a_step_whose_resources_could_never_be_granted_fails_saying_why(
    cluster: Cluster, resources: dict[str, float], reason: str
) -> None:
    steps = [_step("a"), _step("b", "a", resources=resources), _step("c", "b")]
    run = cluster.run({"name": "never", "steps": steps}, strategy="resource-aware")
    with pytest.raises(
        macp.MacpError,
        match=rf"^workflow 'never' failed at step 'b': step 'b' can never get its resources: "
        rf"{re.escape(reason)}; declare the pool or lower the amount$",
    ):
        run.result(timeout_s=10)
    status = run.status()
    states = {step: s["state"] for step, s in status["steps"].items()}
    assert (status["state"], states) == (
        "failed",
        {"a": "succeeded", "b": "failed", "c": "cancelled"},
    )
    assert cluster.resources("usage")["cpu"]["allocated"] == 0


def test_a_step_that_can_never_get_its_resources_runs_its_fallback(cluster: Cluster) -> None:
    steps = [_step("a", resources={"gpu": 1}, on_failure="fallback:b"), _step("b")]
    run = cluster.run({"name": "fallback", "steps": steps}, strategy="resource-aware")
    assert run.result(timeout_s=10) == {"a": {"name": "b", "got": {"name": "b", "deps": {}}}}


def test_priority_starts_the_most_urgent_ready_step_first(probe: Probe, cluster: Cluster) -> None:
    steps = [_step(f"p{p}", priority=p) for p in (0, 2, 1, 3)]
    cluster.run({"name": "prio", "steps": steps}, strategy="priority", max_concurrency=1).result()
    starts = [e[1] for e in probe.events if e[0] == "start"]
    assert starts == ["p3", "p2", "p1", "p0"]


def test_adaptive_records_its_choice_and_why(cluster: Cluster) -> None:
    run = cluster.run(DIAMOND, strategy="adaptive")
    run.result()
    chosen = run.status()["chosen"]
    assert chosen["strategy"] == "parallel"
    assert re.fullmatch(r"[2-6] free agents for up to 2 steps at once: at most 2 at a time",
                        chosen["reason"])  # fmt: skip
    chain = {"name": "chain", "steps": [_step("a"), _step("b", "a")]}
    run = cluster.run(chain, strategy="adaptive")
    run.result()
    chosen = run.status()["chosen"]
    assert chosen["strategy"] == "sequential"
    assert re.fullmatch(r"\d free agent\(s\) for at most 1 step\(s\) at once: one at a time",
                        chosen["reason"])  # fmt: skip


def test_failure_policy_fail_ends_the_run_at_the_failed_step(
    probe: Probe, cluster: Cluster
) -> None:
    steps = [_step("a", body={"fail_until": 9}, retries=0), _step("b", "a")]
    run = cluster.run({"name": "f", "steps": steps})
    with pytest.raises(macp.MacpError, match="workflow 'f' failed at step 'a'"):
        run.result()
    states = {k: v["state"] for k, v in run.status()["steps"].items()}
    assert states == {"a": "failed", "b": "cancelled"}
    assert not any(e[1] == "b" for e in probe.events)


def test_failure_policy_continue_runs_the_dependents_without_the_output(cluster: Cluster) -> None:
    steps = [_step("a", body={"fail_until": 9}, retries=0, on_failure="continue"), _step("b", "a")]
    result = cluster.run({"name": "c", "steps": steps}).result()
    assert result["b"]["got"]["deps"] == {"a": None}


def test_failure_policy_fallback_runs_the_fallback_in_its_place(cluster: Cluster) -> None:
    steps = [
        _step("a", body={"fail_until": 9}, retries=0, on_failure="fallback:plan_b"),
        _step("plan_b"),
        _step("b", "a"),
    ]
    run = cluster.run({"name": "fb", "steps": steps})
    result = run.result()
    assert result["b"]["got"]["deps"]["a"]["name"] == "plan_b"
    states = {k: v["state"] for k, v in run.status()["steps"].items()}
    assert states == {"a": "succeeded", "plan_b": "succeeded", "b": "succeeded"}


def test_an_unneeded_fallback_never_runs(cluster: Cluster) -> None:
    steps = [_step("a", on_failure="fallback:plan_b"), _step("plan_b")]
    run = cluster.run({"name": "nf", "steps": steps})
    assert run.result() == {"a": {"name": "a", "got": {"name": "a", "deps": {}}}}
    assert run.status()["steps"]["plan_b"]["state"] == "skipped"


def test_a_flaky_step_is_retried(cluster: Cluster) -> None:
    steps = [_step("a", body={"fail_until": 2}, retries=2)]
    run = cluster.run({"name": "flaky", "steps": steps})
    assert run.result()["a"]["name"] == "a"
    task_id = run.status()["steps"]["a"]["task_id"]
    assert cluster.status(task_id)["attempts"] == 2


def test_pause_holds_the_next_steps_and_resume_lets_them_run(
    probe: Probe, cluster: Cluster
) -> None:
    steps = [_step("a", body={"gate": True}), _step("b", "a"), _step("c", "b")]
    run = cluster.run({"name": "p", "steps": steps})
    probe.wait_for(lambda ev: ("start", "a") in [e[:2] for e in ev])
    assert run.pause() == "paused"
    probe.open()
    wait_until(lambda: run.status()["steps"]["a"]["state"] == "succeeded")
    assert run.status()["steps"]["b"]["state"] == "ready"
    assert not any(e[1] == "b" for e in probe.events)
    assert run.resume() == "running"
    assert run.result()["c"]["name"] == "c"


def test_cancel_ends_a_running_workflow(probe: Probe, cluster: Cluster) -> None:
    steps = [_step("a", body={"gate": True}), _step("b", "a")]
    run = cluster.run({"name": "x", "steps": steps})
    probe.wait_for(lambda ev: ("start", "a") in [e[:2] for e in ev])
    assert run.cancel() is True
    with pytest.raises(macp.Cancelled, match="was cancelled"):
        run.result()
    states = {k: v["state"] for k, v in run.status()["steps"].items()}
    assert states == {"a": "cancelled", "b": "cancelled"}
    assert run.cancel() is False


def test_an_unknown_workflow_name_is_refused(cluster: Cluster) -> None:
    cluster.define(DIAMOND)
    with pytest.raises(
        macp.InvalidParams, match=r"no workflow 'nope' is defined \(defined: diamond\)"
    ):
        cluster.run("nope")
