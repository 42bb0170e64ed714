"""Evaluations of agents' contributions on a live cluster: journaled, aggregated into each
agent's performance_score (in its registry record too), kept across a SIGKILL of the head, and
deciding which of two equally loaded agents the coordinator gives the next task (unless
prefer_scored is off)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS

import macp
from macp import Cluster, start_control_plane
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node
    from macp.testing import LocalCluster, NodeProcess

pytestmark = pytest.mark.integration

PAIR = ("a@w1", "b@w1")


@pytest.fixture
def pair(
    make_node: Callable[..., Node], procs: Callable[..., NodeProcess], tmp_path: Path
) -> Callable[..., Cluster]:
    """Start a head in this process (its coordinator with the options given), and a node
    process w1 running two Echoes, a and b, both free for every task."""

    def start(**coordinator: Any) -> Cluster:
        node = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
        start_control_plane(node, journal=tmp_path / "j.sqlite3", coordinator=coordinator)
        procs("w1", "--head", "head", "--peer", f"head={node.address}", *QUICK_CLUSTER_FLAGS,
              "--agent", "a=agents:Echo", "--agent", "b=agents:Echo")  # fmt: skip
        cluster = Cluster(node)
        cluster.wait_for_agents(PAIR, timeout_s=15)
        return cluster

    return start


def _next_agents(cluster: Cluster, count: int) -> list[str]:
    """Who ran each of ``count`` echo tasks submitted one after the other (each waited for, so
    both agents are equally loaded, with none in flight, when the next one is routed)."""
    return [str(cluster.submit("echo", i).result(timeout_s=10)["me"]) for i in range(count)]


def _score(cluster: Cluster, address: str) -> Any:
    [record] = [r for r in cluster.agents() if r["address"] == address]
    return record["performance_score"]


def test_the_better_scored_of_two_equally_loaded_agents_gets_the_next_task(
    pair: Callable[..., Cluster],
) -> None:
    cluster = pair()
    assert sorted(_next_agents(cluster, 2)) == list(PAIR)  # no scores yet: in turn
    by_b = cluster.submit("echo", "for b", agent="b@w1")
    by_b.result(timeout_s=10)
    answer = cluster.evaluate("reviewer", {"accuracy": 0.9, "clarity": 0.7}, task_id=by_b.id)
    assert (answer["contributor"], answer["score"]) == ("b@w1", pytest.approx(0.8))
    assert (answer["performance_score"], answer["evaluations"]) == (pytest.approx(0.8), 1)
    cluster.evaluate("reviewer", {"accuracy": 0.2}, contributor="a@w1", result_ref="draft-1")
    assert _score(cluster, "b@w1") == pytest.approx(0.8)  # in the registry once answered
    assert _next_agents(cluster, 3) == ["b@w1"] * 3

    for _ in range(2):  # a: (0.2 + 1 + 1) / 3 = 0.73; b: (0.8 + 0) / 2 = 0.4
        cluster.evaluate("reviewer", {"accuracy": 1.0}, contributor="a@w1", result_ref="r")
    cluster.evaluate("reviewer", {"accuracy": 0.0}, contributor="b@w1", result_ref="r")
    assert cluster.performance_scores() == {
        "a@w1": {"performance_score": pytest.approx(2.2 / 3), "evaluations": 3},
        "b@w1": {"performance_score": pytest.approx(0.4), "evaluations": 2},
    }
    assert _next_agents(cluster, 3) == ["a@w1"] * 3


def test_load_comes_before_the_score(
    pair: Callable[..., Cluster],
) -> None:
    cluster = pair()
    cluster.evaluate("reviewer", {"accuracy": 1.0}, contributor="b@w1", result_ref="r")
    hung = cluster.submit("hang", None, agent="b@w1", timeout_s=30)
    wait_until(lambda: cluster.status(hung.id)["state"] == "running", 10, "b never took it")
    assert _next_agents(cluster, 2) == ["a@w1"] * 2  # b is the better, but has one in flight
    hung.cancel()


def test_with_prefer_scored_off_the_agents_take_turns_whatever_their_scores(
    pair: Callable[..., Cluster],
) -> None:
    cluster = pair(prefer_scored=False)
    cluster.evaluate("reviewer", {"accuracy": 1.0}, contributor="b@w1", result_ref="r")
    cluster.evaluate("reviewer", {"accuracy": 0.0}, contributor="a@w1", result_ref="r")
    assert (_score(cluster, "a@w1"), _score(cluster, "b@w1")) == (0.0, 1.0)
    ran = _next_agents(cluster, 4)
    assert sorted(ran) == ["a@w1", "a@w1", "b@w1", "b@w1"]
    assert ran[0] != ran[1]


def test_evaluations_are_listed_by_contributor_and_by_task(
    pair: Callable[..., Cluster],
) -> None:
    cluster = pair()
    task = cluster.submit("echo", "x", agent="a@w1")
    task.result(timeout_s=10)
    first = cluster.evaluate("alice", {"accuracy": 0.5}, task_id=task.id, comments="terse")
    second = cluster.evaluate("bob", {"accuracy": 1.0}, contributor="b@w1", result_ref="run:s1")
    by_task = cluster.evaluations(task_id=task.id)
    assert [e["id"] for e in by_task] == [first["id"]]
    assert by_task[0] == {
        "id": first["id"], "evaluator": "alice", "contributor": "a@w1", "task_id": task.id,
        "result_ref": None, "scores": {"accuracy": 0.5}, "score": 0.5, "comments": "terse",
        "time_ms": first["time_ms"],
    }  # fmt: skip
    assert [e["id"] for e in cluster.evaluations(contributor="b@w1")] == [second["id"]]
    assert [e["id"] for e in cluster.evaluations()] == [second["id"], first["id"]]
    assert cluster.find(node="w1", capabilities=[])[0]["evaluations"] == 1
    with pytest.raises(macp.NotFound, match=r"^no agent 'ghost@w1' is registered to evaluate"):
        cluster.evaluate("carol", {"accuracy": 1.0}, task_id=task.id, contributor="ghost@w1")
    helper = cluster.evaluate("carol", {"accuracy": 0.3}, task_id=task.id, contributor="b@w1")
    assert (helper["contributor"], helper["performance_score"]) == ("b@w1", pytest.approx(0.65))


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        (
            {"scores": {"accuracy": 7}, "contributor": "a@w1", "result_ref": "r"},
            macp.InvalidParams,
            r"^scores\['accuracy'\] must be a number from 0 \(worst\) to 1 \(best\), not 7$",
        ),
        (
            {"scores": {"accuracy": -0.1}, "contributor": "a@w1", "result_ref": "r"},
            macp.InvalidParams,
            r"^scores\['accuracy'\] must be a number from 0 \(worst\) to 1 \(best\), not -0.1$",
        ),
        (
            {"scores": {}, "contributor": "a@w1", "result_ref": "r"},
            macp.InvalidParams,
            (
                r"^an evaluation's 'scores' must map each criterion to a number from 0 to 1, "
                r"not \{\}; e\.g\. \{'accuracy': 0\.8\}$"
            ),
        ),
        (
            {"scores": {"accuracy": 1}, "contributor": "a@w1"},
            macp.InvalidParams,
            r"^an evaluation needs the 'task_id' or the 'result_ref' it evaluates$",
        ),
        (
            {"scores": {"accuracy": 1}, "result_ref": "r"},
            macp.InvalidParams,
            r"^an evaluation of a 'result_ref' needs its 'contributor' \(name@node\)$",
        ),
        (
            {"scores": {"accuracy": 1}, "task_id": "no-such-task"},
            macp.NotFound,
            r"^no task 'no-such-task' to evaluate; task_list names the tasks$",
        ),
        (
            {"scores": {"accuracy": 1}, "contributor": "ghost@w1", "result_ref": "r"},
            macp.NotFound,
            r"^no agent 'ghost@w1' is registered to evaluate; agent_list names those that are$",
        ),
    ],
)
def test_a_bad_evaluation_is_refused_in_one_sentence_and_changes_no_score(
    pair: Callable[..., Cluster],
    fields: dict[str, Any],
    error: type[macp.MacpError],
    message: str,
) -> None:
    cluster = pair()
    with pytest.raises(error, match=message):
        cluster.evaluate("reviewer", **fields)
    assert cluster.performance_scores() == {}
    assert cluster.evaluations() == []


def test_scores_are_kept_across_a_sigkill_of_the_head(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster({"w1": {"a": "agents:Echo", "b": "agents:Echo"}}, processes=True)
    cluster = local.cluster
    task = cluster.submit("echo", "x", agent="a@w1")
    task.result(timeout_s=10)
    cluster.evaluate("reviewer", {"accuracy": 0.6}, task_id=task.id)
    cluster.evaluate("reviewer", {"accuracy": 1.0, "speed": 0.8}, contributor="a@w1",
                     result_ref="r")  # fmt: skip
    cluster.evaluate("reviewer", {"accuracy": 0.1}, contributor="b@w1", result_ref="r")
    before = cluster.performance_scores()
    assert before["a@w1"] == {"performance_score": pytest.approx(0.75), "evaluations": 2}

    local.restart("head")  # SIGKILL, then started again on its journal
    cluster = local.cluster
    assert cluster.performance_scores() == before
    assert [e["task_id"] for e in cluster.evaluations(contributor="a@w1")] == [None, task.id]

    def shown() -> dict[str, Any]:
        return {r["address"]: r["performance_score"] for r in cluster.find(node="w1")}

    wait_until(lambda: shown() == pytest.approx({"a@w1": 0.75, "b@w1": 0.1}), 15,
               "the restarted registry never showed the scores")  # fmt: skip
    assert _next_agents(cluster, 2) == ["a@w1"] * 2


def test_a_restarted_registry_shows_the_scores_again(pair: Callable[..., Cluster]) -> None:
    cluster = pair()
    cluster.evaluate("reviewer", {"accuracy": 0.9}, contributor="b@w1", result_ref="r")
    before = next(r for r in cluster.agents() if r["address"] == "registry@head")["incarnation"]
    answers = cluster.control("restart", "registry@head")
    assert answers["registry@head"]["ok"] is True, answers

    def shown() -> Any:
        records = {r["address"]: r for r in cluster.agents()}
        fresh = records.get("registry@head", {}).get("incarnation") != before
        return fresh and records.get("b@w1", {}).get("performance_score") == 0.9

    wait_until(shown, 15, "the restarted registry never showed b's score")
    cluster.wait_for_agents(PAIR, timeout_s=15)
    assert _next_agents(cluster, 2) == ["b@w1"] * 2
