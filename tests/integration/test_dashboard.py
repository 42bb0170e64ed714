"""The web dashboard in a real headless browser (the system's chromium, driven by Playwright)
against a real 3-node topology (node processes) and a gateway member serving it: the page
loads without console errors, the graph shows every agent and the topology's edges, an agent
paused through the API turns paused on the page within 2 s, a submitted task shows up in the
table and completes, charts per task type, a workflow run's DAG, alerts, and a killed node's
agents turning offline. Screenshots of each view are kept as artifacts."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from dashboard_browser import (
    AGENTS,
    Tab,
    environment,
    launch,
    serve,
    start_topology,
    topology_file,
)
from playwright.sync_api import expect, sync_playwright
from topology_procs import ROOT, TopologyNodes, free_ports

from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Browser

pytestmark = pytest.mark.integration

PAUSE_SEEN_S = 2.0
"""How soon a change of an agent's state must show on the page."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright, launch(playwright) as launched:
        yield launched


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TopologyNodes]:
    nodes = start_topology(tmp_path_factory.mktemp("dash"))
    try:
        yield nodes
    finally:
        nodes.kill()


@pytest.fixture
def url(topology: TopologyNodes) -> Iterator[str]:
    with serve(topology) as served:
        yield served


def call(url: str, operation: str, arguments: dict[str, Any]) -> Any:
    with httpx.Client(base_url=url, timeout=10) as http:
        answer = http.post(f"/api/v1/operations/{operation}", json=arguments)
        assert answer.status_code == 200, answer.text
        return answer.json()


def ended(url: str, task: str, state: str) -> bool:
    return bool(call(url, "task_status", {"task_id": task})["state"] == state)


def drawn(tab: Tab) -> set[str]:
    return set(
        tab.page.eval_on_selector_all("circle.agent", "cs => cs.map(c => c.dataset.address)")
    )


def test_the_page_loads_without_console_errors_and_draws_every_agent_and_edge(
    browser: Browser, url: str
) -> None:
    with Tab.open(browser, url) as tab:
        expect(tab.page.locator("circle.agent")).to_have_count(len(AGENTS))
        assert drawn(tab) == AGENTS
        for node in ("head", "n1", "n2"):
            expect(tab.page.locator(f'g.node[data-node="{node}"]')).to_have_count(1)
        # hub-and-spoke: the splitter to each of the counters
        expect(tab.page.locator("#graph path.edge")).to_have_count(2)
        expect(tab.page.locator("#topology-name")).to_have_text("dash (hub-and-spoke)")
        expect(tab.page.locator("#ws-state")).to_have_text("live")
        expect(tab.page.locator("#agents tbody tr")).to_have_count(len(AGENTS))
        tab.shot("dashboard-topology", view="topology")
        assert tab.errors == []


def test_an_agent_paused_through_the_api_turns_paused_on_the_page_within_2_s(
    browser: Browser, url: str
) -> None:
    with Tab.open(browser, url) as tab:
        expect(tab.page.locator("#ws-state")).to_have_text("live")
        dot = tab.page.locator('circle[data-address="echo-2@n1"]')
        expect(dot).to_have_attribute("data-status", "available")
        try:
            call(url, "agent_control", {"command": "pause", "target": "echo-2@n1"})
            paused = time.monotonic()
            expect(dot).to_have_attribute("data-status", "paused", timeout=PAUSE_SEEN_S * 1000)
            assert time.monotonic() - paused < PAUSE_SEEN_S
            row = tab.page.locator('#agents tr[data-address="echo-2@n1"] td.status')
            expect(row).to_have_text("paused")
            tab.shot("dashboard-paused", height=528)  # the README's (docs/images/dashboard.png)
        finally:
            call(url, "agent_control", {"command": "resume", "target": "echo-2@n1"})
        expect(dot).to_have_attribute("data-status", "available", timeout=PAUSE_SEEN_S * 1000)
        assert tab.errors == []


def test_a_submitted_task_shows_up_in_the_table_completes_and_opens_in_detail(
    browser: Browser, url: str
) -> None:
    with Tab.open(browser, url) as tab:
        expect(tab.page.locator("#agents tbody tr")).to_have_count(len(AGENTS))  # counts read
        tab.page.click('#views button[data-view="tasks"]')
        expect(tab.page.locator("#ws-state")).to_have_text("live")
        task = call(url, "task_orchestrate", {
            "type": "echo", "body": {"word": "dashboard"}, "capabilities": ["echo"],
        })["task_id"]  # fmt: skip
        row = tab.page.locator(f'#tasks tr[data-task="{task}"]')
        expect(row.locator("td").nth(2)).to_have_text("succeeded")
        expect(row.locator("td").nth(1)).to_have_text("echo")
        row.click()
        detail = tab.page.locator("#task-detail")
        expect(detail.locator("h3")).to_have_text(f"task {task}")
        expect(detail.locator("pre.result")).to_contain_text('"word": "dashboard"')
        attempt = detail.locator("table.attempts tbody tr")
        expect(attempt).to_have_count(1)
        expect(attempt.locator("td").nth(3)).to_have_text("succeeded")
        expect(attempt.locator("td").nth(1)).to_have_text(re.compile(r"^echo-\d@(head|n1|n2)$"))
        agent = attempt.locator("td").nth(1).inner_text()
        shown = tab.page.locator(f'#agents tr[data-address="{agent}"] td').nth(6)

        def counted_alike() -> bool:  # the journal's counts catch up with its next flush
            (row,) = (a for a in call(url, "agent_list", {})["agents"] if a["address"] == agent)
            return shown.text_content() == f"{row['succeeded']} / {row['failed']}"

        wait_until(counted_alike, 10, f"{agent}'s counts on the page are not agent_list's")
        tab.shot("dashboard-tasks", view="tasks")
        assert tab.errors == []


def test_the_task_filters_show_only_the_tasks_they_name(browser: Browser, url: str) -> None:
    echoed = call(url, "task_orchestrate", {"type": "echo", "body": 1, "capabilities": ["echo"]})
    failed = call(url, "task_orchestrate", {
        "type": "fail", "body": "no", "capabilities": ["echo"], "max_retries": 0,
    })  # fmt: skip
    for task, state in ((echoed["task_id"], "succeeded"), (failed["task_id"], "failed")):
        wait_until(partial(ended, url, task, state), 10, f"task {task} never {state}")
    with Tab.open(browser, url) as tab:
        tab.page.click('#views button[data-view="tasks"]')
        tab.page.select_option('#task-filters select[name="state"]', "failed")
        tab.page.click('#task-filters button[type="submit"]')
        rows = tab.page.locator("#tasks tbody tr")
        expect(rows.first).to_be_visible()
        expect(tab.page.locator(f'#tasks tr[data-task="{failed["task_id"]}"]')).to_have_count(1)
        expect(tab.page.locator(f'#tasks tr[data-task="{echoed["task_id"]}"]')).to_have_count(0)
        states = tab.page.eval_on_selector_all(
            "#tasks tbody tr td:nth-child(3)", "cells => cells.map(c => c.textContent)"
        )
        assert set(states) == {"failed"}
        assert tab.errors == []


def test_a_waiting_task_shows_why_it_waits_and_arrives_live(browser: Browser, url: str) -> None:
    with Tab.open(browser, url) as tab:
        tab.page.click('#views button[data-view="tasks"]')
        expect(tab.page.locator("#ws-state")).to_have_text("live")
        task = call(url, "task_orchestrate", {"type": "nobody", "timeout_s": 60})["task_id"]
        row = tab.page.locator(f'#tasks tr[data-task="{task}"]')
        expect(row.locator("td").nth(2)).to_have_text("pending")
        tab.page.click('#task-filters button[type="submit"]')  # the list, read again
        expect(row.locator("td.reason")).to_have_text(
            "no agent that handles 'nobody' is registered"
        )
        row.click()
        expect(tab.page.locator("#task-detail dd").last).to_have_text(
            "no agent that handles 'nobody' is registered"
        )
        call(url, "task_cancel", {"task_id": task})
        expect(row.locator("td").nth(2)).to_have_text("cancelled")
        assert tab.errors == []


def test_charts_per_task_type_show_throughput_errors_and_latency(
    browser: Browser, url: str
) -> None:
    for i in range(3):
        done = call(url, "task_orchestrate", {"type": "echo", "body": i, "capabilities": ["echo"]})
        call(url, "task_result", {"task_id": done["task_id"], "wait_s": 10})
    with Tab.open(browser, url) as tab:
        tab.page.click('#views button[data-view="metrics"]')
        echo = tab.page.locator('#charts .task-type[data-type="echo"]')
        expect(echo.locator("figcaption")).to_have_text(
            ["throughput (tasks/s)", "error rate (share)", "latency (ms)"]
        )
        expect(echo.locator("path.series")).to_have_count(5)  # p50, p95, p99 and two
        tab.shot("dashboard-metrics", view="metrics")
        assert tab.errors == []


def test_a_workflow_run_shows_its_dag_with_each_steps_state(browser: Browser, url: str) -> None:
    run = call(url, "workflow_execute", {"workflow": "fan", "input": 5})["run_id"]
    with Tab.open(browser, url) as tab:
        tab.page.click('#views button[data-view="workflows"]')
        tab.page.locator(f'#runs tr[data-run="{run}"]').click()
        steps = tab.page.locator("#run-detail g.step")
        expect(steps).to_have_count(4)
        expect(tab.page.locator("#run-detail line.edge")).to_have_count(4)  # the DAG's edges
        x = {
            step: float(
                tab.page.locator(f'#run-detail g[data-step="{step}"] rect').get_attribute("x") or ""
            )
            for step in ("first", "left", "right", "last")
        }
        assert x["first"] < x["left"] == x["right"] < x["last"]
        for step in ("first", "left", "right", "last"):
            expect(tab.page.locator(f'#run-detail g[data-step="{step}"] .step-state')).to_have_text(
                "succeeded"
            )
        expect(tab.page.locator("#run-detail h3")).to_have_text(f"{run} (fan): succeeded")
        tab.shot("dashboard-workflow", view="workflows")
        assert tab.errors == []


def test_an_alert_that_fires_shows_among_the_active_ones(browser: Browser, url: str) -> None:
    done = call(url, "task_orchestrate", {"type": "echo", "body": 0, "capabilities": ["echo"]})
    call(url, "task_result", {"task_id": done["task_id"], "wait_s": 10})
    with Tab.open(browser, url) as tab:
        tab.page.click('#views button[data-view="alerts"]')
        active = tab.page.locator("#alerts-active tbody tr")
        expect(active.locator("td").first).to_have_text("echo-done", timeout=10_000)
        expect(active.locator("td").nth(3)).to_have_text("tasks.succeeded{type=echo} >= 1")
        expect(tab.page.locator("#alert-count")).to_have_text("1")
        recent = tab.page.locator("#alerts-recent tbody tr").last  # newest first: the first firing
        expect(recent.locator("td").nth(1)).to_have_text("echo-done")
        expect(recent.locator("td").nth(2)).to_have_text("firing")
        tab.shot("dashboard-alerts", view="alerts")
        assert tab.errors == []


def test_a_killed_nodes_agents_turn_offline_on_the_page(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    nodes = start_topology(tmp_path_factory.mktemp("killed"))
    try:
        with serve(nodes) as url, Tab.open(browser, url) as tab:
            expect(tab.page.locator("#ws-state")).to_have_text("live")
            expect(tab.page.locator("circle.agent")).to_have_count(len(AGENTS))
            nodes.procs["n2"].kill()
            for agent in ("counter-2@n2", "echo-3@n2"):
                dot = tab.page.locator(f'circle[data-address="{agent}"]')
                expect(dot).to_have_attribute("data-status", "offline", timeout=10_000)
            for agent in AGENTS - {"counter-2@n2", "echo-3@n2"}:
                dot = tab.page.locator(f'circle[data-address="{agent}"]')
                expect(dot).to_have_attribute("data-status", "available")
            tab.shot("dashboard-offline")
            assert tab.errors == []
    finally:
        nodes.kill()


def test_topology_shape_answers_the_shape_the_head_recorded(url: str) -> None:
    shape = call(url, "topology_shape", {})
    assert shape == {
        "name": "dash", "kind": "hub-and-spoke", "nodes": ["head", "n1", "n2"], "head": "head",
        "agents": {
            "splitter": {"role": None, "group": None, "instances": ["splitter@head"]},
            "counter": {"role": None, "group": None, "instances": ["counter-1@n1", "counter-2@n2"]},
            "echo": {"role": None, "group": None,
                     "instances": ["echo-1@head", "echo-2@n1", "echo-3@n2"]},
        },
        "edges": [["splitter", "counter"]], "recorded": True,
    }  # fmt: skip


def test_metrics_history_reads_several_series_at_once(url: str) -> None:
    done = call(url, "task_orchestrate", {"type": "echo", "body": 0, "capabilities": ["echo"]})
    call(url, "task_result", {"task_id": done["task_id"], "wait_s": 10})
    names = ["tasks.throughput{type=echo}", "tasks.duration_p99_ms{type=echo}"]

    def sampled() -> bool:
        series = call(url, "metrics_history", {"names": names, "since_s": 60})["series"]
        return list(series) == names and all(series[n] for n in names)

    wait_until(sampled, 10, "the monitor never sampled the echo tasks")
    by_prefix = call(url, "metrics_history", {"prefix": "tasks.error_rate{", "since_s": 60})
    assert "tasks.error_rate{type=echo}" in by_prefix["series"]
    assert all(n.startswith("tasks.error_rate{") for n in by_prefix["series"])
    for points in by_prefix["series"].values():
        assert all(len(p) == 2 and 0 <= p[1] <= 1 for p in points)  # [time_ms, share]
    with httpx.Client(base_url=url, timeout=10) as http:
        refused = http.post("/api/v1/operations/metrics_history", json={"since_s": 0})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "since_s"
    assert refused.json()["error"]["message"].startswith(
        "POST /api/v1/operations/metrics_history: 'since_s'"
    )


def test_without_authentication_another_sites_page_cannot_change_state(url: str) -> None:
    pause = {"command": "pause", "target": "echo-1@head"}
    with httpx.Client(base_url=url, timeout=10) as http:
        refused = http.post(
            "/api/v1/operations/agent_control", json=pause,
            headers={"Origin": "http://elsewhere.example"},
        )  # fmt: skip
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == (
            "a request from another site's page (http://elsewhere.example) may not change "
            "state on this gateway; send it from the gateway's own dashboard"
        )
        assert http.get("/api/v1/agents", headers={"Origin": "http://elsewhere.example"}).is_success
        status = call(url, "agent_status", {"agent": "echo-1@head"})
        assert status["live"]["state"] != "paused"


def test_the_page_needs_no_login_without_authentication_and_forbids_framing(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/login", follow_redirects=False).headers["location"] == "/"
        page = http.get("/")
        assert page.status_code == 200
        assert 'data-can-control="true"' in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        script = http.get("/static/app.js")
        assert (script.status_code, script.headers["content-type"].split(";")[0]) == (
            200, "text/javascript",
        )  # fmt: skip


def test_a_run_arrives_live_and_its_dag_shows_a_step_waiting_and_why(
    browser: Browser, url: str
) -> None:
    call(url, "workflow_define", {"name": "stuck", "steps": [
        {"id": "a", "type": "echo", "body": 1, "capabilities": ["echo"]},
        {"id": "b", "type": "nobody", "depends_on": ["a"]},
    ]})  # fmt: skip
    with Tab.open(browser, url) as tab:
        tab.page.click('#views button[data-view="workflows"]')
        expect(tab.page.locator("#ws-state")).to_have_text("live")
        run = call(url, "workflow_execute", {"workflow": "stuck", "input": 1})["run_id"]
        try:
            tab.page.locator(f'#runs tr[data-run="{run}"]').click()  # arrived with its events
            a, b = (tab.page.locator(f'#run-detail g[data-step="{s}"] .step-state') for s in "ab")
            expect(a).to_have_text("succeeded")
            expect(b).to_have_text("running")
            expect(tab.page.locator('#run-detail .waits li[data-step="b"]')).to_have_text(
                "b: no agent that handles 'nobody' is registered"
            )
            tab.shot("dashboard-workflow-waiting", view="workflows")
        finally:
            call(url, "workflow_cancel", {"run_id": run})
        expect(tab.page.locator("#run-detail h3")).to_have_text(f"{run} (stuck): cancelled")
        assert tab.errors == []


def test_macp_up_serves_the_dashboard_of_the_topology_it_started(
    browser: Browser, tmp_path: Path
) -> None:
    """`macp up` of a file with a gateway: its head records the shape, its gateway draws it."""
    (port,) = free_ports(1)
    file = topology_file(tmp_path, extra=f'gateway: {{http: "127.0.0.1:{port}"}}\n')
    env = environment(tmp_path)
    err: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "macp", "up", str(file)], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        reader = threading.Thread(target=lambda: err.extend(proc.stderr or []), daemon=True)
        reader.start()
        try:
            wait_until(lambda: err, 60, "macp up did not say it is up")
            assert f", gateway http at http://127.0.0.1:{port};" in err[0], err
            with Tab.open(browser, f"http://127.0.0.1:{port}") as tab:
                expect(tab.page.locator("#topology-name")).to_have_text("dash (hub-and-spoke)")
                expect(tab.page.locator("circle.agent")).to_have_count(len(AGENTS))
                expect(tab.page.locator("#graph path.edge")).to_have_count(2)
                assert drawn(tab) == AGENTS
                assert tab.errors == []
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(10)


PIPELINE_AGENTS = {
    "line@head", "ingest@head", "parse@head", "transform-1@crunch", "transform-2@head",
    "transform-3@crunch", "transform-4@head", "validate@crunch", "aggregate@head", "output@head",
}  # fmt: skip
HIERARCHY_AGENTS = {
    "director@hq", "lead-a@team-a", "lead-b@team-b", "worker-a-1@team-a", "worker-a-2@team-a",
    "worker-b-1@team-b", "worker-b-2@team-b",
}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        # the tree: director -> two leads, each lead -> its two workers
        ("hierarchy", ["hq", "team-a", "team-b"], HIERARCHY_AGENTS, 2 + 2 * 2),
        # (the line agent that runs the stages is drawn, with no edge)
        # stages in line: 1 + 4 (parse to each transform) + 4 * 1 + 1 + 1
        ("pipeline", ["head", "crunch"], PIPELINE_AGENTS, 1 + 4 + 4 + 1 + 1),
    ],
    ids=["hierarchy", "pipeline"],
)
def test_the_graph_draws_each_kinds_edges(
    browser: Browser, tmp_path: Path, case: tuple[str, list[str], set[str], int]
) -> None:
    example, nodes, agents, edges = case
    started = TopologyNodes(f"examples/{example}/topology.yaml", nodes, environment(tmp_path))
    try:
        started.start(agents)
        with serve(started) as url, Tab.open(browser, url) as tab:
            expect(tab.page.locator("circle.agent")).to_have_count(len(agents))
            assert drawn(tab) == agents
            expect(tab.page.locator("#graph path.edge")).to_have_count(edges)
            tab.shot(f"dashboard-{example}")
            assert tab.errors == []
    finally:
        started.kill()
