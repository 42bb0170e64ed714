"""Trees of tasks on a real cluster (a head and two worker node processes): a hub decomposes a
task, delegates its parts to three agents on two nodes and merges them, and the lineage of the
result names every contributing agent and input; a cancelled parent cancels its open children;
a child's failure reaches its parent by the parent's policy (fail, ignore, retry); deadlines;
the tree across a head restart; and bad input refused in one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from gateway_cluster import call
from lineage_agents import SPOKES
from procs import QUICK_CLUSTER, TESTS

import macp
from macp.errors import error_body
from macp.gateway import Member
from macp.store import Journal
from macp.testing import LocalCluster, NodeProcess, settings_flags, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

NODES = {
    "w1": {"hub": "lineage_agents:Splitter", "boss": "lineage_agents:Delegator",
           "belt": "lineage_agents:Belt",
           "sq1": "agents:Squarer", "gate1": "lineage_agents:Waiter", "echo": "agents:Echo"},
    "w2": {"sq2": "agents:Squarer", "sq3": "agents:Squarer", "gate2": "lineage_agents:Waiter",
           "flaky": "lineage_agents:FailsFirst"},
}  # fmt: skip


@dataclass
class Processes:
    """The module's node processes: a head and two workers."""

    head: NodeProcess
    workers: list[NodeProcess]

    @property
    def address(self) -> str:
        assert self.head.address is not None
        return self.head.address


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    """A head and two worker node processes (w1, w2) running :data:`NODES`, for the module."""
    journal = tmp_path_factory.mktemp("lineage") / "journal.sqlite3"
    flags = settings_flags(QUICK_CLUSTER)
    started: list[NodeProcess] = []
    try:
        head = NodeProcess("head", *flags, "--control-plane", "--journal", str(journal),
                           pythonpath=[TESTS])  # fmt: skip
        started.append(head.start())
        for name, agents in NODES.items():
            args = [a for agent, cls in agents.items() for a in ("--agent", f"{agent}={cls}")]
            worker = NodeProcess(name, *flags, "--head", "head", "--peer",
                                 f"head={head.address}", *args, pythonpath=[TESTS])  # fmt: skip
            started.append(worker.start())
        with macp.connect(str(head.address)) as client:
            everyone = [f"{a}@{node}" for node, named in NODES.items() for a in named]
            client.wait_for_agents(everyone, timeout_s=30)
        yield Processes(head, started[1:])
    finally:
        for proc in reversed(started):
            proc.kill()


@pytest.fixture
def cluster(processes: Processes) -> Iterator[macp.Cluster]:
    """A client of the module's cluster, for one test."""
    with macp.connect(processes.address) as client:
        yield client


def _ids(tasks: list[dict[str, Any]]) -> list[str]:
    return [t["id"] for t in tasks]


def _last_event_is(cluster: macp.Cluster, task_id: str, event: str) -> bool:
    return bool(cluster.status(task_id)["log"][-1]["event"] == event)


def _state(cluster: macp.Cluster, task_id: str) -> str:
    return str(cluster.status(task_id)["state"])


def test_a_hubs_result_names_every_contributing_agent_and_input(cluster: macp.Cluster) -> None:
    task = cluster.submit("topology.submit", {"items": [2, 3, 4]}, agent="hub@w1")
    result = task.result(timeout_s=30)
    assert (result["squares"], result["sum"], result["errors"]) == ([4, 9, 16], 29, [])

    children = cluster.children(task.id)
    assert [(c["type"], c["agent"], c["state"]) for c in children] == [
        ("square", spoke, "succeeded") for spoke in SPOKES
    ]
    assert {(c["parent"], c["delegated_by"]) for c in children} == {(task.id, "hub@w1")}

    lineage = cluster.lineage(task.id)
    assert (task.children(), task.lineage()) == (children, lineage)
    assert (lineage["task"]["id"], lineage["root"], lineage["ancestors"]) == (task.id, task.id, [])
    assert lineage["truncated"] is False
    assert [(d["id"], d["depth"]) for d in lineage["descendants"]] == [
        (c["id"], 1) for c in children
    ]
    contributors = lineage["contributors"]
    assert contributors["agents"] == sorted(["hub@w1", *SPOKES])
    assert [(i["task_id"], i["agent"], i["body"]) for i in contributors["inputs"]] == [
        (task.id, "hub@w1", {"items": [2, 3, 4]}),
        *((c["id"], c["agent"], {"x": x}) for c, x in zip(children, [2, 3, 4], strict=True)),
    ]

    below = cluster.lineage(children[1]["id"])
    assert (below["root"], _ids(below["ancestors"]), below["descendants"]) == (
        task.id, [task.id], [],
    )  # fmt: skip
    assert below["contributors"]["agents"] == ["sq2@w2"]


def test_an_assembly_lines_result_names_each_stages_agent_and_input(
    cluster: macp.Cluster,
) -> None:
    items = [{"x": 1}, {"x": 2}, {"x": 3}]
    task = cluster.submit("topology.submit", items, agent="belt@w1")
    squares = task.result(timeout_s=30)
    assert [s["square"] for s in squares] == [1, 4, 9]
    lineage = task.lineage()
    stages = lineage["descendants"]
    assert (
        sorted((s["parent"], s["delegated_by"], s["type"]) for s in stages)
        == [(task.id, "belt@w1", "square")] * 3
    )
    inputs = lineage["contributors"]["inputs"]
    assert sorted(i["body"]["x"] for i in inputs[1:]) == [1, 2, 3]
    assert lineage["contributors"]["agents"] == sorted({"belt@w1", *(s["by"] for s in squares)})


def test_a_subtask_delegated_through_ctx_gets_its_parent_agent_run_and_context(
    cluster: macp.Cluster,
) -> None:
    run = cluster.run(
        {"name": "delegating", "steps": [{"id": "s", "type": "delegate", "agent": "boss@w1",
         "body": {"children": [{"type": "whoami", "agent": "gate2@w2",
                                "context": {"brief": "be short", "n": [1, 2]}}]}}]},
    )  # fmt: skip
    run_id = run.id
    assert run.result(timeout_s=30)["s"]["results"][0]["me"] == "gate2@w2"
    parent_id = run.status()["steps"]["s"]["task_id"]
    (child,) = cluster.children(parent_id)
    answer = cluster.result(child["id"])
    assert answer == {"task_id": child["id"], "context": {"brief": "be short", "n": [1, 2]},
                      "me": "gate2@w2"}  # fmt: skip
    assert (child["parent"], child["delegated_by"], child["run"]) == (parent_id, "boss@w1", run_id)
    status = cluster.status(child["id"])
    assert (status["parent"], status["run"], status["context"]) == (
        parent_id, run_id, {"brief": "be short", "n": [1, 2]},
    )  # fmt: skip


def _blocked_children(cluster: macp.Cluster, tmp_path: Path, **policy: Any) -> tuple[str, Path]:
    """A delegator's task whose two children (one per worker) wait on a file not yet there;
    returned once both run."""
    gate = tmp_path / "open"
    children = [
        {"type": "wait_file", "body": {"path": str(gate)}, "agent": agent}
        for agent in ("gate1@w1", "gate2@w2")
    ]
    parent = cluster.submit("delegate", {"children": children}, agent="boss@w1", **policy)
    wait_until(
        lambda: [c["state"] for c in cluster.children(parent.id)] == ["running", "running"],
        20, "the children did not both start",
    )  # fmt: skip
    return parent.id, gate


def test_a_cancelled_parent_cancels_its_open_children(
    cluster: macp.Cluster, tmp_path: Path
) -> None:
    parent, _gate = _blocked_children(cluster, tmp_path)
    assert cluster.cancel(parent) is True
    children = cluster.children(parent)
    assert [c["state"] for c in children] == ["cancelled", "cancelled"]
    for child in children:
        with pytest.raises(macp.Cancelled, match=f"cancelled with its parent {parent}"):
            cluster.result(child["id"])
    for child_id in _ids(children):  # their handlers learn it, stop, and are ignored
        stopped = tmp_path / f"open.{child_id}.stopped"
        wait_until(stopped.exists, 20, "a child's handler did not learn it was cancelled")
        wait_until(partial(_last_event_is, cluster, child_id, "duplicate_ignored"), 20,
                   "a child's late answer was not ignored")  # fmt: skip
        assert _state(cluster, child_id) == "cancelled"
    assert _state(cluster, parent) == "cancelled"


def _delegate(cluster: macp.Cluster, children: list[dict[str, Any]], **spec: Any) -> macp.Task:
    return cluster.submit("delegate", {"children": children, **spec.pop("body", {})},
                          agent="boss@w1", max_retries=0, **spec)  # fmt: skip


def test_a_failed_child_fails_its_parent_by_default(cluster: macp.Cluster) -> None:
    parent = _delegate(cluster, [{"type": "fail", "body": "x", "agent": "echo@w1",
                                  "max_retries": 0}])  # fmt: skip
    with pytest.raises(macp.AgentError, match=r"because its child task \w+ \(fail\) failed"):
        parent.result(timeout_s=30)
    (child,) = cluster.children(parent.id)
    assert child["state"] == "failed"
    error = cluster.status(parent.id)["error"]
    assert (error["error"], error["data"]["child"]) == ("AgentError", child["id"])


def test_a_parent_ignoring_child_failures_goes_on_with_the_error(cluster: macp.Cluster) -> None:
    parent = _delegate(
        cluster,
        [{"type": "fail", "body": "x", "agent": "echo@w1", "max_retries": 0},
         {"type": "square", "body": {"x": 5}, "agent": "sq1@w1"}],
        body={"catch": True}, on_child_failure="ignore",
    )  # fmt: skip
    result = parent.result(timeout_s=30)
    assert result["results"][0]["error"] == "PoisonMessage"  # failed, with no retry left
    assert "cannot handle 'x'" in result["results"][0]["message"]
    assert result["results"][1] == {"square": 25, "by": "sq1@w1"}
    assert [c["state"] for c in cluster.children(parent.id)] == ["failed", "succeeded"]


def test_a_hub_ignoring_child_failures_merges_the_error(cluster: macp.Cluster) -> None:
    task = cluster.submit("topology.submit", {"items": [2, "not a number", 4]}, agent="hub@w1",
                          on_child_failure="ignore")  # fmt: skip
    result = task.result(timeout_s=60)
    assert (result["squares"], result["sum"]) == ([4, None, 16], 20)
    (failed,) = result["errors"]
    assert failed["error"]["error"] == "PoisonMessage", failed
    assert "ValueError: invalid literal for int()" in failed["error"]["message"]
    lineage = cluster.lineage(task.id)
    assert lineage["contributors"]["agents"] == ["hub@w1", "sq1@w1", "sq3@w2"]


def test_a_parent_retrying_failed_children_resubmits_them(cluster: macp.Cluster) -> None:
    parent = _delegate(
        cluster,
        [{"type": "flaky", "body": {"fail": 2}, "agent": "flaky@w2", "max_retries": 0}],
        on_child_failure="retry", child_retries=2,
    )  # fmt: skip
    result = parent.result(timeout_s=30)
    assert result["results"] == [{"runs": 3, "by": "flaky@w2"}]
    (child,) = cluster.children(parent.id)
    status = cluster.status(child["id"])
    assert (status["state"], status["resubmits"], status["attempts"]) == ("succeeded", 2, 3)
    assert [e["resubmits"] for e in status["log"] if e["event"] == "resubmitted"] == [1, 2]

    beyond = _delegate(
        cluster,
        [{"type": "flaky", "body": {"fail": 5}, "agent": "flaky@w2", "max_retries": 0}],
        on_child_failure="retry", child_retries=1,
    )  # fmt: skip
    with pytest.raises(macp.AgentError, match=r"because its child task \w+ \(flaky\) failed"):
        beyond.result(timeout_s=30)
    (child,) = cluster.children(beyond.id)
    assert (cluster.status(child["id"])["resubmits"], child["state"]) == (1, "failed")


def test_a_task_past_its_deadline_fails_and_is_not_retried(
    cluster: macp.Cluster, tmp_path: Path
) -> None:
    never: dict[str, macp.Wire] = {"path": str(tmp_path / "never"), "within_s": 3}
    task = cluster.submit("wait_file", never, agent="gate1@w1", deadline=time.time() + 1.0,
                          max_retries=3)  # fmt: skip
    with pytest.raises(macp.AskTimeout, match=rf"task {task.id} \(wait_file\) passed its deadline"):
        task.result(timeout_s=20)
    status = cluster.status(task.id)
    assert (status["state"], status["attempts"]) == ("failed", 1)


def test_bad_lineage_input_is_refused_in_one_sentence(cluster: macp.Cluster) -> None:
    with pytest.raises(macp.NotFound, match=r"^task field 'parent' names no task 'nope'; give"):
        cluster.submit("square", {"x": 1}, parent="nope")
    done = cluster.submit("square", {"x": 1}, agent="sq1@w1")
    done.result()
    with pytest.raises(
        macp.InvalidParams,
        match=rf"^task field 'parent' is task {done.id}, which has succeeded already; a subtask",
    ):
        cluster.submit("square", {"x": 1}, parent=done.id)
    with pytest.raises(macp.InvalidParams, match=r"^task field 'deadline' \d+\.\d+ is in the past"):
        cluster.submit("square", {"x": 1}, deadline=time.time() - 5)
    with pytest.raises(macp.InvalidParams, match=r"^task field 'on_child_failure' must be one of"):
        cluster.submit("square", {"x": 1}, on_child_failure="shrug")
    with pytest.raises(macp.NotFound, match=r"^no task 'nope'"):
        cluster.lineage("nope")
    with pytest.raises(macp.InvalidParams, match=r"^'limit' must be an integer from 1 to 10000"):
        cluster.lineage(done.id, limit=0)


def test_the_tree_and_its_cancellations_hold_across_a_head_restart(
    local_cluster: Callable[..., LocalCluster], journal_path: Path, tmp_path: Path
) -> None:
    local = local_cluster(NODES, processes=True)
    cluster = local.cluster
    hub_task = cluster.submit("topology.submit", {"items": [1, 2, 3]}, agent="hub@w1")
    assert hub_task.result(timeout_s=30)["sum"] == 14
    before = cluster.lineage(hub_task.id)
    parent, _gate = _blocked_children(cluster, tmp_path)
    children = _ids(cluster.children(parent))
    local.kill("head")
    # As if the head had journaled the parent's cancel, and died before its children's
    with Journal(journal_path) as journal:
        record = journal.get_task(parent)
        assert record is not None
        cancelled = error_body(macp.Cancelled(f"task {parent} was cancelled"))
        journal.put_task(parent, {**record, "state": "cancelled", "error": cancelled,
                                  "finished_ms": record["updated_ms"]})  # fmt: skip
    local.restart("head")
    cluster = local.cluster
    assert cluster.lineage(hub_task.id) == before
    assert [cluster.status(c)["state"] for c in children] == ["cancelled", "cancelled"]
    with pytest.raises(macp.Cancelled, match=f"cancelled with its parent {parent} \\(cancelled\\)"):
        cluster.result(children[0])
    assert _ids(cluster.children(parent)) == children
    for child_id in children:  # their handlers, still running, learn it and stop
        stopped = tmp_path / f"open.{child_id}.stopped"
        wait_until(stopped.exists, 20, "a child's handler did not learn it was cancelled")


def test_the_gateway_decomposes_assigns_delegates_and_merges_a_parents_subtasks(
    processes: Processes, cluster: macp.Cluster, tmp_path: Path
) -> None:
    decided = cluster.submit("square", {"x": 1}, agent="sq1@w1")
    decided.result()
    gate = tmp_path / "open"
    parent = cluster.submit("wait_file", {"path": str(gate)}, agent="gate1@w1")
    wait_until(lambda: _state(cluster, parent.id) == "running", 20, "the parent did not start")
    with Member.join(processes.address, settings=QUICK_CLUSTER) as member:
        decomposed = call(member, "decompose_task", {"type": "topology.submit",
                                                     "body": {"items": [5, 6]}})  # fmt: skip
        assert decomposed == {"hub": "hub@w1", "parts": [{"x": 5}, {"x": 6}], "count": 2}
        assigned = call(member, "assign_subtasks", {
            "parent": parent.id, "type": "square", "parts": decomposed["parts"],
            "capabilities": ["square"],
        })  # fmt: skip
        delegated = call(member, "delegate_subtask", {
            "parent": parent.id, "agent": "gate2", "type": "whoami", "context": {"lang": "fr"},
        })  # fmt: skip
        assert (delegated["agent"], delegated["parent"]) == ("gate2@w2", parent.id)
        ids = [s["task_id"] for s in assigned["subtasks"]] + [delegated["task_id"]]
        assert cluster.result(delegated["task_id"])["context"] == {"lang": "fr"}
        for task_id in ids:
            cluster.result(task_id)

        orchestrated = call(member, "task_orchestrate", {
            "type": "whoami", "agent": "gate2@w2", "parent": parent.id, "context": [1, 2],
            "deadline": time.time() + 60, "on_child_failure": "ignore",
        })  # fmt: skip
        status = cluster.status(orchestrated["task_id"])
        assert (status["parent"], status["on_child_failure"]) == (parent.id, "ignore")
        assert cluster.result(orchestrated["task_id"])["context"] == [1, 2]
        ids.append(orchestrated["task_id"])
        lineage_only = "'parent', 'delegated_by', 'run', 'deadline' and 'context' are for"
        with pytest.raises(macp.InvalidParams, match=lineage_only):
            call(member, "task_orchestrate", {"type": "square", "parallelism": 2, "context": 1})
        tree = call(member, "task_tree", {"task_id": parent.id})
        # the agent running the parent delegates them, unless told otherwise
        children = [(c["id"], c["delegated_by"]) for c in tree["tree"]["children"]]
        assert children == [(i, "gate1@w1") for i in ids]
        results = [{"square": 25}, {"square": 36}]
        merged = call(member, "merge_results", {"hub": "hub", "results": results})
        assert merged["merged"]["sum"] == 61
        from_children = call(member, "merge_results", {"hub": "hub@w1", "parent": parent.id})
        assert from_children["merged"]["squares"][:2] == [25, 36]
        assert from_children["merged"]["of"] == {"path": str(gate)}
        lineage = call(member, "task_lineage", {"task_id": parent.id})
        assert lineage["contributors"]["agents"][0] == "gate1@w1"
        assert {"gate2@w2"} < set(lineage["contributors"]["agents"])

        with pytest.raises(macp.NotFound, match=r"^'parent' names no task 'nope'; give the id"):
            call(member, "assign_subtasks", {"parent": "nope", "type": "square", "parts": [1]})
        late = {"parent": decided.id, "agent": "sq1", "type": "square", "body": {"x": 1}}
        with pytest.raises(macp.InvalidParams, match=r"^task field 'parent' is task \w+, which "
                                                     r"has succeeded already"):  # fmt: skip
            call(member, "delegate_subtask", late)
        with pytest.raises(macp.InvalidParams, match="give 'hub' \\(an agent\\) or 'type'"):
            call(member, "decompose_task", {"body": 1})
        with pytest.raises(macp.ActorNotFound, match="no available hub handles task type 'nah'"):
            call(member, "decompose_task", {"type": "nah", "body": 1})
    gate.touch()
    assert parent.result(timeout_s=20)["by"] == "gate1@w1"


def test_the_cluster_decomposes_assigns_delegates_merges_and_reads_the_tree(
    cluster: macp.Cluster, tmp_path: Path
) -> None:
    gate = tmp_path / "open"
    parent = cluster.submit("wait_file", {"path": str(gate)}, agent="gate1@w1")
    wait_until(lambda: _state(cluster, parent.id) == "running", 20, "the parent did not start")
    decomposed = cluster.decompose_task({"items": [5, 6]}, type="topology.submit")
    assert decomposed == {"hub": "hub@w1", "parts": [{"x": 5}, {"x": 6}], "count": 2}
    assigned = cluster.assign_subtasks(parent.id, "square", decomposed["parts"],
                                       capabilities=["square"])  # fmt: skip
    delegated = cluster.delegate_subtask(parent.id, "gate2", "whoami", context={"lang": "fr"})
    assert [t.result(timeout_s=20)["square"] for t in assigned] == [25, 36]
    assert delegated.result(timeout_s=20)["context"] == {"lang": "fr"}
    orchestrated = cluster.submit("whoami", agent="gate2@w2", parent=parent.id,
                                  delegated_by="planner@w1", run=None)  # fmt: skip
    orchestrated.result(timeout_s=20)

    tree = cluster.task_tree(parent.id)
    children = [(c["id"], c["delegated_by"]) for c in tree["tree"]["children"]]
    ids = [t.id for t in assigned] + [delegated.id]
    assert children == [(i, "gate1@w1") for i in ids] + [(orchestrated.id, "planner@w1")]
    assert (tree["count"], tree["truncated"]) == (4, False)
    assert cluster.merge_results([{"square": 25}, {"square": 36}], hub="hub")["sum"] == 61
    merged = cluster.merge_results(parent=parent.id, hub="hub@w1")
    assert (merged["squares"][:2], merged["of"]) == ([25, 36], {"path": str(gate)})
    assert [r["square"] for r in cluster.merge_results(parent=parent.id)[:2]] == [25, 36]
    with pytest.raises(macp.ActorNotFound, match="no available hub handles task type 'nah'"):
        cluster.decompose_task(1, type="nah")
    gate.touch()
    assert parent.result(timeout_s=20)["by"] == "gate1@w1"


def test_macp_lineage_and_macp_task_print_the_parent_children_and_contributors(
    processes: Processes, cluster: macp.Cluster
) -> None:
    task = cluster.submit("topology.submit", {"items": [1, 2, 3]}, agent="hub@w1")
    task.result(timeout_s=30)
    child = cluster.children(task.id)[0]["id"]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    shown = subprocess.run(
        [sys.executable, "-m", "macp", "lineage", child, "--connect", processes.address],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"task {child} square succeeded on sq1@w1"
    assert lines[1:] == [
        "delegated by hub@w1",
        f"parent: {task.id} topology.submit succeeded on hub@w1",
        "children (0), 0 tasks below:",
        "contributors: sq1@w1",
    ]
    whole = subprocess.run(
        [sys.executable, "-m", "macp", "lineage", task.id, "--connect", processes.address,
         "--json"], env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert json.loads(whole.stdout)["contributors"]["agents"] == sorted(["hub@w1", *SPOKES])
    of_child = subprocess.run(
        [sys.executable, "-m", "macp", "task", child, "--connect", processes.address],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert f"  parent: {task.id} (delegated by hub@w1)\n" in of_child.stdout, of_child.stderr
    assert "children (0)" in of_child.stdout
    of_parent = subprocess.run(
        [sys.executable, "-m", "macp", "task", task.id, "--connect", processes.address],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "children (3)" in of_parent.stdout, of_parent.stderr
    assert "  tree below (3 tasks):\n" in of_parent.stdout  # each child indented under it
    child_json = subprocess.run(
        [sys.executable, "-m", "macp", "task", child, "--connect", processes.address, "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    shown = json.loads(child_json.stdout)
    assert ([a["id"] for a in shown["ancestors"]], shown["descendants"]) == ([task.id], [])
    rows = [r for r in (line.split() for line in of_parent.stdout.splitlines())
            if r[3:4] == ["square"]]  # fmt: skip
    assert [(r[1], r[5], r[7]) for r in rows] == [
        (c["id"], "succeeded", c["agent"]) for c in cluster.children(task.id)
    ]
    missing = subprocess.run(
        [sys.executable, "-m", "macp", "lineage", "nope", "--connect", processes.address],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith("NotFound: no task 'nope'; check the id submit "
                                           "returned (a finished task is kept for the journal's "
                                           "retention: settings.journal_retention)")  # fmt: skip
