"""`macp tasks`, `task`, `runs`, `run-status`, `alerts` and `agents` (and `status`'s waiting
column), run as subprocesses against a real cluster of node processes in which a task waits for
each reason; their bad flags; and the agents' counts the same after the head is SIGKILLed and
started again on its journal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from history_cluster import HOLD_GPU, history_nodes, wait_code
from topology_procs import macp_cli

import macp
from macp.errors import PoisonMessage
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from topology_procs import TopologyNodes

pytestmark = pytest.mark.integration
__all__ = ["history_nodes"]  # the fixture, used by name

REASONS = {
    "nobody-handles": "none_registered", "square": "all_paused", "echo": "breakers_open",
    "wait_file": "all_busy", "crunch": "node_down",
}  # fmt: skip
"""Each pending task's type, and the code of why it waits."""


@dataclass
class Scene:
    """What the module's cluster holds: a task waiting for each reason (by type), a task that
    failed twice, a run whose step waits for the pool."""

    nodes: TopologyNodes
    waiting: dict[str, str]
    failed: str
    run_id: str

    def cli(self, *args: str) -> Any:
        """``macp ARGS --connect HEAD``: its completed process."""
        return macp_cli(*args, "--connect", self.nodes.head, env=self.nodes.env)

    def json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def scene(history_nodes: TopologyNodes) -> Iterator[Scene]:
    """The tasks and the run made once, through a client closed before the tests (each test
    leaves no macp thread in this process)."""
    gate: dict[str, Any] = {
        "path": str(history_nodes.env["MACP_DATA_DIR"]) + "/never-opened",
        "within_s": 120,
    }
    with macp.connect(history_nodes.head) as cluster:
        cluster.control("pause", "sq@w1")
        failing = cluster.submit("fail", {"n": 1}, agent="flaky@w1", max_retries=1)
        with pytest.raises(PoisonMessage):
            failing.result(timeout_s=20)
        held = cluster.submit("wait_file", gate, timeout_s=300)
        wait_until(lambda: cluster.status(held.id)["state"] == "running", 15, "gate not running")
        lease = cluster.resources("allocate", owner="cli-test", amounts={"gpu": 1})
        run = cluster.run(HOLD_GPU, strategy="resource-aware")
        history_nodes.procs["w2"].kill()
        specs: dict[str, dict[str, Any]] = {"nobody-handles": {}, "square": {"body": {"x": 4}},
                 "echo": {"agent": "flaky@w1"}, "wait_file": {"body": gate},
                 "crunch": {"body": {"x": 1}}}  # fmt: skip
        waiting = {
            kind: cluster.submit(kind, spec.get("body"), agent=spec.get("agent"), timeout_s=300).id
            for kind, spec in specs.items()
        }
        for kind, task_id in waiting.items():
            wait_code(partial(cluster.status, task_id), REASONS[kind], f"the {kind} task")
        wait_code(lambda: run.status()["steps"]["train"], "pool_exhausted", "the train step")
    yield Scene(history_nodes, waiting, failing.id, run.id)
    del lease  # held until the nodes are killed


def test_tasks_shows_why_each_pending_task_waits(scene: Scene) -> None:
    listed = scene.json("tasks", "--state", "pending")
    codes = {t["type"]: t["wait"]["code"] for t in listed["tasks"]}
    assert codes == REASONS
    assert {t["id"] for t in listed["tasks"]} == set(scene.waiting.values())
    assert listed["counts"] == {"pending": 5}
    table = scene.cli("tasks", "--state", "pending")
    assert table.returncode == 0, table.stderr
    assert "tasks (5 of 5: pending 5)" in table.stdout
    for code in REASONS.values():
        assert f"{code}:" in table.stdout


def test_tasks_filters_by_type_agent_state_and_since(scene: Scene) -> None:
    assert [t["id"] for t in scene.json("tasks", "--type", "fail")["tasks"]] == [scene.failed]
    by_agent = scene.json("tasks", "--agent", "flaky", "--state", "failed", "--state", "pending")
    assert [t["id"] for t in by_agent["tasks"]] == [scene.failed]  # a pending task has no agent
    failed = by_agent["tasks"][0]
    assert failed["error"]["code"] == -32001
    assert scene.json("tasks", "--since", "2099-01-01T00:00:00Z")["total"] == 0
    recent = scene.json("tasks", "--since", "10m", "--limit", "2")
    assert (len(recent["tasks"]), recent["total"]) == (2, sum(recent["counts"].values()))
    assert recent["total"] >= 7
    table = scene.cli("tasks", "--type", "fail")
    assert "failed 2 times" in table.stdout


def test_status_shows_why_each_pending_task_waits(scene: Scene) -> None:
    report = scene.json("status")
    pending = {t["type"]: t["wait"]["code"] for t in report["tasks"] if t["state"] == "pending"}
    assert pending == REASONS
    # a resource-aware run's step waiting for a lease of the exhausted pool: its run's row
    runs = {r["id"]: r["waiting"] for r in report["workflows"]}
    assert runs[scene.run_id]["train"]["code"] == "pool_exhausted"
    table = scene.cli("status")
    assert table.returncode == 0, table.stderr
    assert "waiting" in table.stdout
    for code in [*REASONS.values(), "pool_exhausted"]:  # (a sentence folds over the lines)
        assert f"{code}:" in table.stdout


def test_task_shows_its_attempts_timings_and_error(scene: Scene) -> None:
    status = scene.json("task", scene.failed)
    assert [(a["attempt"], a["agent"], a["node"], a["outcome"])
            for a in status["attempt_history"]] == [(1, "flaky@w1", "w1", "failed"),
                                                    (2, "flaky@w1", "w1", "failed")]  # fmt: skip
    assert status["run_ms"] >= 0
    assert status["wait_ms"] >= 0
    assert status["error"]["error"] == "PoisonMessage"
    shown = scene.cli("task", scene.failed)
    assert shown.returncode == 0, shown.stderr
    assert f"task {scene.failed} (fail): failed" in shown.stdout
    assert "attempts (2)" in shown.stdout
    assert "error: PoisonMessage: " in shown.stdout
    waiting = scene.json("task", scene.waiting["square"])
    assert waiting["wait"]["code"] == "all_paused"
    assert (
        "waiting (all_paused): no agent that handles 'square'"
        in scene.cli("task", scene.waiting["square"]).stdout
    )


def test_runs_and_run_status_show_the_steps_their_dependencies_and_the_pool_wait(
    scene: Scene,
) -> None:
    runs = scene.json("runs")
    assert scene.run_id in {r["id"] for r in runs["runs"]}
    assert scene.run_id in scene.cli("runs").stdout
    status = scene.json("run-status", scene.run_id)
    steps = {k: (s["state"], s["depends_on"], (s.get("wait") or {}).get("code"))
             for k, s in status["steps"].items()}  # fmt: skip
    assert steps == {
        "prep": ("succeeded", [], None),
        "train": ("ready", ["prep"], "pool_exhausted"),
    }
    shown = scene.cli("run-status", scene.run_id)
    assert shown.returncode == 0, shown.stderr
    assert f"run {scene.run_id} of gpu-job: running (resource-aware)" in shown.stdout
    assert "waits for its resources (gpu 1)" in " ".join(shown.stdout.split())


def test_alerts_shows_the_rule_firing_and_its_transition(scene: Scene) -> None:
    def fired() -> bool:
        return any(a["rule"] == "fail-failed" for a in scene.json("alerts")["active"])

    wait_until(fired, 15, "the rule on failed 'fail' tasks did not fire")
    recent = scene.json("alerts")["recent"]
    assert [(a["rule"], a["state"]) for a in recent] == [("fail-failed", "firing")]
    shown = scene.cli("alerts")
    assert shown.returncode == 0, shown.stderr
    assert "firing (1)" in shown.stdout
    assert "recent (1)" in shown.stdout


def test_agents_show_the_tasks_each_succeeded_and_failed(scene: Scene) -> None:
    agents = {a["address"]: a for a in scene.json("agents")}
    assert (agents["flaky@w1"]["succeeded"], agents["flaky@w1"]["failed"]) == (0, 1)
    assert agents["runner@w1"]["succeeded"] == 1  # the run's first step
    assert "coordinator@head" not in agents
    shown = scene.cli("agents")
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tasks", "--since", "yesterday"], ("error: --since must be a duration back from now "
         "(90s, 10m, 2h, 1d), an ISO time (2026-01-31T12:00:00Z) or unix seconds, not "
         "'yesterday'")),
        (["tasks", "--state", "done"], ("error: --state must be one of pending, assigned, "
         "running, retrying, succeeded, failed, cancelled, not 'done'")),
        (["tasks", "--limit", "0"], "error: --limit must be from 1 to 20000, not 0"),
    ],
)  # fmt: skip
def test_a_bad_flag_exits_2_naming_it_without_connecting(
    history_nodes: TopologyNodes, args: list[str], message: str
) -> None:
    done = macp_cli(*args, "--connect", "tcp://127.0.0.1:1", env=history_nodes.env)
    assert (done.returncode, done.stderr.strip(), done.stdout) == (2, message, "")


def test_an_unknown_task_exits_1_naming_it(scene: Scene) -> None:
    done = scene.cli("task", "no-such-task")
    assert done.returncode == 1
    assert done.stderr.startswith("error: NotFound: no task 'no-such-task'; check the id")


def test_the_agents_counts_are_the_same_after_the_head_is_killed_and_restarted(
    scene: Scene,
) -> None:
    def counts() -> dict[str, tuple[int, int]]:
        return {a["address"]: (a["succeeded"], a["failed"]) for a in scene.json("agents")
                if a["address"].endswith("@w1")}  # fmt: skip

    with macp.connect(scene.nodes.head) as cluster:  # once its breaker resets, it would run
        assert cluster.cancel(scene.waiting["echo"]) is True
    ended = ("--state", "succeeded", "--state", "failed", "--state", "cancelled")
    before, tasks_before = counts(), scene.json("tasks", *ended, "--limit", "1000")
    scene.nodes.procs["head"].kill()
    scene.nodes._start("head").wait_ready(30)
    w1_agents = set(before)
    wait_until(
        lambda: w1_agents <= {a["address"] for a in scene.json("agents")}, 30,
        "the w1 agents did not register again",
    )  # fmt: skip
    assert counts() == before
    tasks_after = scene.json("tasks", *ended, "--limit", "1000")
    assert tasks_after == tasks_before
