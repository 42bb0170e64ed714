"""Projects and goals on a real cluster of node processes: a goal's progress follows its linked
tasks as they are released one by one (each blocked on a file the test creates), across a
SIGKILL and restart of the head on its journal; a failed task blocks its goal; a workflow run
and a session count as the rule says; bad input is refused in one sentence."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from topology_procs import macp_cli

import macp
from macp.gateway import OPERATIONS
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp.testing import LocalCluster

pytestmark = pytest.mark.integration

GATES = {"w1": {"g1": "agents:Gate", "g2": "agents:Gate", "g3": "agents:Gate",
                "echo": "agents:Echo", "sq": "agents:Squarer"}}  # fmt: skip


def _shown(goal: dict[str, Any]) -> tuple[float, str, list[str]]:
    """A goal's progress, derived state, and its items' outcomes."""
    return goal["progress"], goal["derived"], [i["outcome"] for i in goal["items"]]


def test_goal_progress_follows_its_tasks_released_one_by_one_across_a_head_restart(  # noqa: PLR0915
    local_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    local = local_cluster(GATES, processes=True)
    cluster = local.cluster
    flags = {n: tmp_path / f"open-{n}" for n in ("g1", "g2", "g3")}
    tasks = {
        n: cluster.submit(
            "wait_file", {"path": str(flags[n]), "within_s": 120}, agent=f"{n}@w1", timeout_s=120
        )
        for n in flags
    }
    project = cluster.projects.create("launch", "echo@w1", status="active")
    pid = project["project_id"]
    assert (project["name"], project["lead"], project["status"]) == ("launch", "echo@w1", "active")
    first = cluster.goals.create(pid, "two gates", status="active")["goal_id"]
    second = cluster.goals.create(pid, "one gate")["goal_id"]
    cluster.goals.link(first, task_id=tasks["g1"].id)
    linked = cluster.goals.link(first, task_id=tasks["g2"].id)
    assert [(x["kind"], x["id"]) for x in linked["links"]] == [
        ("task", tasks["g1"].id), ("task", tasks["g2"].id),
    ]  # fmt: skip
    assert cluster.goals.link(first, task_id=tasks["g2"].id)["links"] == linked["links"]
    cluster.goals.link(second, task_id=tasks["g3"].id)
    wait_until(
        lambda: {t.status()["state"] for t in tasks.values()} == {"running"},
        10,
        "the gates did not all start",
    )
    assert _shown(cluster.goals.status(first)) == (0.0, "in_progress", ["running", "running"])
    assert cluster.projects.status(pid)["progress"] == 0.0

    flags["g1"].touch()
    assert tasks["g1"].result(timeout_s=20)["by"] == "g1@w1"
    assert _shown(cluster.goals.status(first)) == (0.5, "in_progress", ["done", "running"])
    status = cluster.projects.status(pid)
    assert (status["progress"], status["derived"]) == (0.25, "in_progress")
    assert [(g["goal_id"], g["progress"]) for g in status["goals"]] == [(first, 0.5), (second, 0.0)]

    session = cluster.sessions.create("standup", ["g3@w1"], "echo@w1")["session_id"]
    cluster.sessions.send(session, "echo@w1", {"plan": "open the gates"})
    local.restart("head")  # SIGKILLed, then started on its address and its journal
    kept = cluster.sessions.status(session)
    assert (kept["title"], kept["state"], kept["last_seq"]) == ("standup", "open", 1)
    assert sorted(kept["participants"]) == ["echo@w1", "g3@w1"]
    assert [m["body"] for m in cluster.sessions.messages(session)] == [{"plan": "open the gates"}]
    assert cluster.sessions.send(session, "g3@w1", "on it")["seq"] == 2
    after = cluster.goals.status(first)
    assert (after["title"], after["status"], after["project_id"]) == ("two gates", "active", pid)
    assert _shown(after)[:2] == (0.5, "in_progress")
    assert [p["project_id"] for p in cluster.projects.list()] == [pid]

    flags["g2"].touch()
    assert tasks["g2"].result(timeout_s=30)["by"] == "g2@w1"
    assert _shown(cluster.goals.status(first)) == (1.0, "done", ["done", "done"])
    status = cluster.projects.status(pid)
    assert (status["progress"], status["derived"]) == (0.5, "in_progress")

    flags["g3"].touch()
    assert tasks["g3"].result(timeout_s=30)["by"] == "g3@w1"
    status = cluster.projects.status(pid)
    assert (status["progress"], status["derived"]) == (1.0, "done")
    assert [(g["title"], g["derived"]) for g in cluster.goals.list(pid)] == [
        ("two gates", "done"), ("one gate", "done"),
    ]  # fmt: skip

    # a failed task blocks its goal, and the project, until that goal is cancelled
    failed = cluster.submit("fail", {"why": "no"}, agent="echo@w1", max_retries=0)
    with pytest.raises(macp.MacpError):
        failed.result(timeout_s=20)
    third = cluster.goals.create(pid, "doomed", status="active")["goal_id"]
    cluster.goals.link(third, task_id=failed.id)
    assert _shown(cluster.goals.status(third)) == (0.0, "blocked", ["failed"])
    assert cluster.projects.status(pid)["derived"] == "blocked"
    assert cluster.goals.update(third, status="cancelled")["status"] == "cancelled"
    assert cluster.projects.update(pid, status="completed")["status"] == "completed"
    status = cluster.projects.status(pid)
    assert (status["status"], status["progress"], status["derived"]) == ("completed", 1.0, "done")


def test_a_run_counts_its_steps_and_a_session_counts_once_closed(
    local_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    local = local_cluster(GATES, head={"lead": "agents:Echo"})
    cluster = local.cluster
    flag = tmp_path / "open"
    run = cluster.run({"name": "two", "steps": [
        {"id": "a", "type": "square", "body": {"x": 3}, "capabilities": ["square"]},
        {"id": "b", "type": "wait_file", "body": {"path": str(flag)}, "agent": "g1@w1",
         "depends_on": ["a"]},
    ]})  # fmt: skip
    session = cluster.sessions.create("s", ["echo@w1"], "lead@head")["session_id"]
    pid = cluster.projects.create("p", "lead@head")["project_id"]
    goal = cluster.goals.create(pid, "g")["goal_id"]
    cluster.goals.link(goal, run_id=run.id)
    cluster.goals.link(goal, session_id=session)
    wait_until(
        lambda: cluster.goals.status(goal)["items"][0]["progress"] == 0.5,
        10,
        "the run's first step is not counted",
    )
    assert _shown(cluster.goals.status(goal)) == (0.25, "in_progress", ["running", "running"])
    cluster.sessions.close(session)
    flag.touch()
    run.result(timeout_s=20)
    assert _shown(cluster.goals.status(goal)) == (1.0, "done", ["done", "done"])


def test_every_teams_operation_is_a_cluster_method_by_its_name(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = local_cluster(GATES, head={"lead": "agents:Echo"}).cluster
    session = cluster.create_collaboration_session("s", ["echo@w1"], "lead@head")["session_id"]
    assert cluster.join_session(session, "g1@w1")["participants"].keys() >= {"g1@w1"}
    assert cluster.leave_session(session, "g1@w1")["participants"]["g1@w1"]["status"] == "left"
    assert cluster.send_session_message(session, "lead@head", {"hi": 1})["seq"] == 1
    assert [m["body"] for m in cluster.session_messages(session)] == [{"hi": 1}]
    assert [s["session_id"] for s in cluster.list_sessions()] == [session]
    project = cluster.create_project("p", "lead@head")["project_id"]
    assert cluster.update_project(project, status="active")["status"] == "active"
    goal = cluster.create_goal(project, "g")["goal_id"]
    task = cluster.submit("square", {"x": 2}, capabilities=["square"])
    task.result(timeout_s=20)
    cluster.link_to_goal(goal, task_id=task.id)
    assert cluster.update_goal(goal, status="active")["status"] == "active"
    assert cluster.goal_status(goal)["progress"] == 1.0
    assert [g["goal_id"] for g in cluster.list_goals(project)] == [goal]
    assert cluster.project_status(project)["progress"] == 1.0
    assert [p["project_id"] for p in cluster.list_projects()] == [project]
    assert cluster.close_session(session)["state"] == "closed"
    assert cluster.session_status(session)["state"] == "closed"
    assert cluster.find_agents(capabilities=["square"])
    assert cluster.evaluate_contribution("lead@head", {"accuracy": 0.8}, task_id=task.id)
    assert len(cluster.agent_evaluations(task_id=task.id)) == 1


def test_bad_input_is_refused_in_one_sentence(local_cluster: Callable[..., LocalCluster]) -> None:
    local = local_cluster({"w1": {"echo": "agents:Echo"}})
    cluster = local.cluster
    pid = cluster.projects.create("p", "echo@w1")["project_id"]
    goal = cluster.goals.create(pid, "g")["goal_id"]
    with pytest.raises(macp.NotFound, match=r"^no goal 'nope'; list_goals names the goals$"):
        cluster.goals.status("nope")
    with pytest.raises(macp.NotFound, match=r"^no project 'nope'; list_projects names"):
        cluster.goals.create("nope", "g")
    with pytest.raises(
        macp.InvalidParams,
        match=r"^project.create 'status' must be one of planned, active, on_hold, completed, "
        r"cancelled, not 'done'$",
    ):
        cluster.projects.create("p", "echo@w1", status="done")
    with pytest.raises(macp.InvalidParams, match=r"^goal.update 'status' must be one of"):
        cluster.goals.update(goal, status="finished")
    with pytest.raises(macp.InvalidParams, match=r"^lead 'echo' must be an agent address"):
        cluster.projects.create("p", "echo")
    with pytest.raises(macp.NotFound, match=r"^no task 'nope'"):
        cluster.goals.link(goal, task_id="nope")
    with pytest.raises(macp.NotFound, match=r"^no session 'nope'"):
        cluster.goals.link(goal, session_id="nope")
    with pytest.raises(macp.InvalidParams, match=r"^goal.link needs exactly one of task_id"):
        cluster.goals.link(goal, task_id="a", run_id="b")
    with pytest.raises(
        macp.InvalidParams,
        match=r"^link_to_goal: .*give exactly one of task_id, run_id or session_id",
    ):
        OPERATIONS["link_to_goal"].parse({"goal_id": goal})
    assert cluster.goals.status(goal)["links"] == []


def test_the_cli_shows_sessions_projects_and_goals_as_json_and_as_tables(
    local_cluster: Callable[..., LocalCluster], env: dict[str, str]
) -> None:
    local = local_cluster({"w1": {"echo": "agents:Echo", "sq": "agents:Squarer"}})
    cluster = local.cluster
    head = local.address("head")
    task = cluster.submit("square", {"x": 4}, capabilities=["square"])
    task.result(timeout_s=10)
    sid = cluster.sessions.create("s", ["sq@w1"], "echo@w1")["session_id"]
    cluster.sessions.send(sid, "echo@w1", {"n": 1})
    pid = cluster.projects.create("launch", "echo@w1", status="active")["project_id"]
    goal = cluster.goals.create(pid, "square it")["goal_id"]
    cluster.goals.link(goal, task_id=task.id)

    def run(*args: str) -> Any:
        done = macp_cli(*args, "--connect", head, "--json", env=env)
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        return json.loads(done.stdout)

    shown = run("goals", "show", goal)
    assert (shown["goal_id"], shown["progress"], shown["derived"]) == (goal, 1.0, "done")
    assert [g["goal_id"] for g in run("goals", "list", "--project", pid)] == [goal]
    assert run("projects", "show", pid)["progress"] == 1.0
    assert [p["name"] for p in run("projects", "list")] == ["launch"]
    assert [s["session_id"] for s in run("sessions", "list")] == [sid]
    assert run("sessions", "show", sid)["participants"]["sq@w1"]["status"] == "active"
    assert [m["body"] for m in run("sessions", "messages", sid)] == [{"n": 1}]

    table = macp_cli("projects", "show", pid, "--connect", head, env=env)
    assert table.returncode == 0, table.stderr
    assert "goals (1)" in table.stdout
    assert "square it" in table.stdout
    unknown = macp_cli("goals", "show", "nope", "--connect", head, env=env)
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == "error: NotFound: no goal 'nope'; list_goals names the goals\n"
