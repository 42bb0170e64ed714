"""The monitor on a live head: figures per task type, agent and workflow, queue and mailbox
depths, each node's process figures, alert rules with their cooldown, history, Prometheus."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS
from prometheus_client.parser import text_string_to_metric_families

import macp
from macp import Agent, Cluster, handler, start_control_plane
from macp.actors.monitor import ADD_RULE, HISTORY, METRICS, PROMETHEUS, RULES, SUBSCRIBE
from macp.envelope import now_ms
from macp.testing import Probe, ProbedAgent, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

WINDOW_S = 30.0  # long enough that nothing leaves the rate window during a test


class Busy(Agent):
    """Computes for ``ms`` milliseconds."""

    @handler("busy")
    def busy(self, body: dict[str, int]) -> int:
        end, spins = time.monotonic() + body["ms"] / 1000, 0
        while time.monotonic() < end:
            spins += 1
        return spins


class Coin(Agent):
    """Succeeds or fails, as the body says."""

    @handler("maybe")
    def maybe(self, body: dict[str, Any]) -> int:
        if body["fail"]:
            raise RuntimeError(f"task {body['i']} fails on purpose")
        return int(body["i"])


class Stage(Agent):
    """A workflow step that succeeds or fails, as the run's input says."""

    @handler("stage")
    def stage(self, body: dict[str, Any]) -> str:
        if body["fail"]:
            raise RuntimeError("the stage fails on purpose")
        return "staged"


class Holder(ProbedAgent):
    """Holds every task until the test opens the gate."""

    @handler("hold")
    def hold(self, body: int) -> int:
        self.probe.wait_open(timeout_s=10)
        return body


class AlertSink(ProbedAgent):
    """Records the alerts the monitor tells it."""

    @handler("alert")
    def alert(self, body: dict[str, Any]) -> None:
        self.probe.record(body)

    @handler("sync")
    def sync(self, _body: None) -> int:
        """A barrier: answered after every alert already in the mailbox."""
        return len(self.probe.events)


@pytest.fixture
def monitored(
    make_node: Callable[..., Node], tmp_path: Path
) -> Callable[..., tuple[Node, Cluster]]:
    """A head on tcp with the control plane; the monitor samples every 0.1 s (and serves
    Prometheus only if asked). Failures never open the circuit breaker here."""

    def start(**monitor: Any) -> tuple[Node, Cluster]:
        node = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
        config = {"sample_s": 0.1, "window_s": WINDOW_S, **monitor}
        coordinator = {"max_in_flight": 4, "breaker_failures": 1000}
        start_control_plane(
            node, journal=tmp_path / "j.sqlite3", monitor=config, coordinator=coordinator
        )
        return node, Cluster(node)

    return start


def _spawn(node: Node, cluster: Cluster, probe: Probe | None = None, **agents: type[Agent]) -> None:
    for name, cls in agents.items():
        extra: dict[str, Any] = {"probe": probe} if issubclass(cls, ProbedAgent) else {}
        node.spawn(cls, name, **extra)
    wanted = {f"{name}@{node.name}" for name in agents}
    wait_until(
        lambda: wanted <= {r["address"] for r in cluster.agents() if r["status"] == "available"},
        10,
        f"{sorted(wanted)} did not register",
    )


def _metrics(node: Node) -> dict[str, float]:
    return dict(node.ask("monitor", METRICS).get())


def _shows(node: Node, expected: Mapping[str, float]) -> bool:
    metrics = _metrics(node)
    return all(metrics.get(name) == value for name, value in expected.items())


def _history(node: Node, metric: str, since_s: float) -> list[list[float]]:
    return list(node.ask("monitor", HISTORY, {"metric": metric, "since_s": since_s}).get())


def _maybe(cluster: Cluster, fails: list[bool]) -> None:
    """Run one ``maybe`` task per entry, in turn, never retried; check each one's outcome."""
    for i, fail in enumerate(fails):
        task = cluster.submit("maybe", {"i": i, "fail": fail}, max_retries=0)
        if not fail:
            assert task.result() == i
            continue
        last = f"AgentError: RuntimeError: task {i} fails on purpose"
        with pytest.raises(
            macp.PoisonMessage, match=rf"^task {task.id} \(maybe\) failed 1 times; last: {last}$"
        ):
            task.result()


# -- figures --------------------------------------------------------------------------------


def test_outcomes_are_counted_and_timed_per_task_type_agent_and_workflow(
    monitored: Callable[..., tuple[Node, Cluster]],
) -> None:
    node, cluster = monitored()
    _spawn(node, cluster, busy=Busy, coin=Coin, stage=Stage)
    busy = [cluster.submit("busy", {"ms": 5 * i}) for i in range(1, 11)]
    for task in busy:
        task.result()
    _maybe(cluster, [False, True] * 3)
    cluster.define({"name": "report", "steps": [
        {"id": "fetch", "type": "stage", "body": "${input}", "retries": 0},
        {"id": "write", "type": "stage", "body": "${input}", "depends_on": ["fetch"]},
    ]})  # fmt: skip
    good = cluster.run("report", {"fail": False})
    assert good.result() == {"write": "staged"}
    bad = cluster.run("report", {"fail": True})
    with pytest.raises(macp.MacpError, match=r"^workflow 'report' failed at step 'fetch': "):
        bad.result()
    everything_counted = {
        "tasks.throughput{type=busy}": 10 / WINDOW_S,
        "tasks.throughput{type=maybe}": 6 / WINDOW_S,
        "workflow.throughput{workflow=report}": 2 / WINDOW_S,
    }
    wait_until(lambda: _shows(node, everything_counted), 10, "the outcomes were not all counted")
    metrics = _metrics(node)

    counts: dict[str, float] = {
        "tasks.succeeded{type=busy}": 10, "tasks.failed{type=busy}": 0,
        "tasks.error_rate{type=busy}": 0.0,
        "agent.succeeded{agent=busy@head}": 10, "agent.failed{agent=busy@head}": 0,
        "agent.throughput{agent=busy@head}": 10 / WINDOW_S,
        "agent.error_rate{agent=busy@head}": 0.0,
        "tasks.succeeded{type=maybe}": 3, "tasks.failed{type=maybe}": 3,
        "tasks.error_rate{type=maybe}": 0.5,
        "agent.succeeded{agent=coin@head}": 3, "agent.failed{agent=coin@head}": 3,
        "agent.throughput{agent=coin@head}": 6 / WINDOW_S,
        "agent.error_rate{agent=coin@head}": 0.5,
        # the steps are tasks too: fetch and write of the good run, fetch of the bad one
        "tasks.succeeded{type=stage}": 2, "tasks.failed{type=stage}": 1,
        "tasks.throughput{type=stage}": 3 / WINDOW_S, "tasks.error_rate{type=stage}": 1 / 3,
        "workflow.succeeded{workflow=report}": 1, "workflow.failed{workflow=report}": 1,
        "workflow.error_rate{workflow=report}": 0.5,
    }  # fmt: skip
    assert {name: metrics.get(name) for name in counts} == counts

    # A task takes from its (last) assignment to its end, a run from its creation to its end,
    # as their statuses show; percentiles are nearest rank: of 10 values p50 is the 5th and
    # p95 and p99 the 10th, of 2 values p50 is the 1st and p95 and p99 the 2nd.
    took = sorted(t.status()["finished_ms"] - t.status()["assigned_ms"] for t in busy)
    assert took[-1] >= 50  # the slowest computed for 50 ms
    runs = sorted(r.status()["finished_ms"] - r.status()["created_ms"] for r in (good, bad))
    latencies: dict[str, float] = {}
    for area, label, (p50, p9x) in (
        ("tasks", "type=busy", (took[4], took[9])),
        ("agent", "agent=busy@head", (took[4], took[9])),
        ("workflow", "workflow=report", (runs[0], runs[1])),
    ):
        latencies[f"{area}.duration_p50_ms{{{label}}}"] = p50
        latencies[f"{area}.duration_p95_ms{{{label}}}"] = p9x
        latencies[f"{area}.duration_p99_ms{{{label}}}"] = p9x
    assert {name: metrics.get(name) for name in latencies} == pytest.approx(latencies)


def test_a_task_that_never_reached_an_agent_is_counted_against_no_agent(
    monitored: Callable[..., tuple[Node, Cluster]],
) -> None:
    node, cluster = monitored()
    task = cluster.submit("nobody", {}, timeout_s=0.2)
    with pytest.raises(macp.ResourceUnavailable, match=f"^task {task.id} waited 0.2 s: "):
        task.result()
    counted = {"tasks.failed{type=nobody}": 1, "tasks.error_rate{type=nobody}": 1.0}
    wait_until(lambda: _shows(node, counted), 10, "the failure was not counted")
    assert [name for name in _metrics(node) if name.startswith("agent.") and "=None" in name] == []


def test_queue_in_flight_and_mailbox_depths_are_gauged(
    probe: Probe,
    monitored: Callable[..., tuple[Node, Cluster]],
) -> None:
    node, cluster = monitored()
    _spawn(node, cluster, probe, holder=Holder)
    tasks = [cluster.submit("hold", i) for i in range(6)]
    # at most 4 tasks per agent: 4 sent to the holder (one in hand, 3 in its mailbox), 2 queued
    loaded = {
        "coordinator.queue_depth": 2,
        "coordinator.in_flight": 4,
        "agent.mailbox_depth{agent=holder@head}": 4,
    }
    wait_until(lambda: _shows(node, loaded), 5, f"the gauges never showed {loaded}")
    probe.open()
    assert [task.result() for task in tasks] == list(range(6))
    drained = dict.fromkeys(loaded, 0.0)
    wait_until(lambda: _shows(node, drained), 10, "the gauges never went back to 0")


def test_every_node_reports_its_own_process_figures(
    monitored: Callable[..., tuple[Node, Cluster]], procs: Callable[..., NodeProcess]
) -> None:
    node, _cluster = monitored()
    other = procs("n2", "--head", "head", "--peer", f"head={node.address}",
                  "--agent", "echo=agents:Echo", "--heartbeat-s", "0.1")  # fmt: skip
    assert other.proc is not None
    measures = ("cpu_percent", "memory_rss_bytes", "open_files", "open_sockets")
    names = [f"node.{m}{{node={n}}}" for n in ("head", "n2") for m in measures]
    wait_until(lambda: set(names) <= set(_metrics(node)), 10, "some node figures are missing")
    metrics = _metrics(node)
    for name, pid in (("head", os.getpid()), ("n2", other.proc.pid)):
        process = psutil.Process(pid)
        rss = metrics[f"node.memory_rss_bytes{{node={name}}}"]
        assert rss == pytest.approx(process.memory_info().rss, rel=0.25)
        assert metrics[f"node.open_files{{node={name}}}"] == pytest.approx(
            process.num_fds(), abs=10
        )
        # at least its listening socket and its connection to the other node
        assert metrics[f"node.open_sockets{{node={name}}}"] >= 2
        assert 0 <= metrics[f"node.cpu_percent{{node={name}}}"] <= 100 * (psutil.cpu_count() or 1)


# -- alerts ---------------------------------------------------------------------------------


COOLDOWN_S = 5.0  # the second burst (about 2.5 s after the first alert) must fall within it


def test_an_alert_fires_once_clears_and_keeps_quiet_within_its_cooldown(
    probe: Probe,
    monitored: Callable[..., tuple[Node, Cluster]],
) -> None:
    node, cluster = monitored(window_s=1.0)
    _spawn(node, cluster, probe, coin=Coin, sink=AlertSink)
    metric = "tasks.error_rate{type=maybe}"
    rule: dict[str, macp.Wire] = {
        "name": "errors", "metric": metric, "op": ">", "threshold": 0.5, "for_s": 0.3,
        "cooldown_s": COOLDOWN_S,
    }  # fmt: skip
    assert node.ask("monitor", ADD_RULE, rule).get() == {**rule, "firing": False}
    assert node.ask("monitor", SUBSCRIBE, {"address": "sink@head"}).get() == {
        "subscribed": "sink@head"
    }
    firing = {"rule": "errors", "metric": metric, "value": 1.0, "op": ">", "threshold": 0.5,
              "state": "firing"}  # fmt: skip
    resolved = {**firing, "value": 0.0, "state": "resolved"}

    def sequence() -> list[dict[str, Any]]:
        return [{k: v for k, v in alert.items() if k != "ts"} for alert in probe.events]

    # Failures hold the error rate at 1.0 for the 1 s window, then it falls back to 0.
    _maybe(cluster, [True, True])
    probe.wait_count(2)
    assert sequence() == [firing, resolved]
    fired_ms, resolved_ms = probe.events[0]["ts"], probe.events[1]["ts"]
    first_above = min(ts for ts, v in _history(node, metric, 30) if v > 0.5)
    assert fired_ms - first_above >= 250  # it held for_s (0.3 s) first, less clock jitter

    # Within the cooldown, the condition holds long enough again but nothing fires.
    _maybe(cluster, [True, True])
    held: list[float] = []

    def held_then_cleared() -> bool:
        history = _history(node, metric, 30)
        held[:] = [ts for ts, v in history if ts > resolved_ms and v > 0.5]
        return bool(held) and history[-1][0] > held[-1] and history[-1][1] == 0.0

    wait_until(held_then_cleared, 10, "the second burst of failures never showed, or never cleared")
    assert held[-1] - held[0] >= 300, "it held too briefly to prove anything about the cooldown"
    cooldown_ms = COOLDOWN_S * 1000
    assert held[-1] < fired_ms + cooldown_ms, "it held after the cooldown: too slow to prove it"
    assert node.ask("sink@head", "sync").get() == 2  # every alert told so far has arrived

    # After the cooldown, it fires (once) and clears again.
    wait_until(lambda: now_ms() > fired_ms + cooldown_ms, COOLDOWN_S)
    _maybe(cluster, [True, True])
    probe.wait_count(4)
    assert sequence() == [firing, resolved, firing, resolved]
    assert probe.events[2]["ts"] - fired_ms >= cooldown_ms
    assert node.ask("sink@head", "sync").get() == 4
    assert node.ask("monitor", RULES).get() == [{**rule, "firing": False}]


def test_a_bad_rule_in_the_monitor_config_is_refused_when_the_control_plane_starts(
    make_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = make_node("head", settings=QUICK_CLUSTER)
    rules: list[macp.Wire] = [{"name": "r", "metric": "m", "op": "~", "threshold": 1}]
    with pytest.raises(
        macp.ConfigError,
        match=r"^monitor: 'rules\[0\]\.op' must be one of >, >=, <, <=, ==, !=, not '~'$",
    ):
        start_control_plane(node, journal=tmp_path / "j.sqlite3", monitor={"rules": rules})


_RULE = {"name": "r", "metric": "m", "op": ">", "threshold": 1}
_EXPR = "'expr' must read 'METRIC OP THRESHOLD [for Ns]', e.g. 'tasks.error_rate{type=x} > 0.5 for 10s', not"  # fmt: skip # noqa: E501


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"metric": "m", "op": ">", "threshold": 1}, "an alert rule: 'name' is required"),
        ({"name": "r", "op": ">", "threshold": 1},
         "rule 'r': 'metric' is required (or give the whole condition as 'expr')"),
        ({**_RULE, "op": "~"}, "rule 'r': 'op' must be one of >, >=, <, <=, ==, !=, not '~'"),
        ({**_RULE, "threshold": "high"}, "rule 'r': 'threshold' must be a number"),
        ({**_RULE, "for_s": True}, "rule 'r': 'for_s' must be a number"),
        ({**_RULE, "cooldown_s": "1m"}, "rule 'r': 'cooldown_s' must be a number"),
        ({"name": "r", "expr": "cpu is high"}, f"rule 'r': {_EXPR} 'cpu is high'"),
        ({"name": "r", "metric": "m", "op": ">"},
         "rule 'r': 'threshold' is required (or give the whole condition as 'expr')"),
        ({"name": "r", "expr": "m > 1.2.3"}, f"rule 'r': {_EXPR} 'm > 1.2.3'"),
    ],
    ids=["name", "metric", "op", "threshold", "for_s", "cooldown_s", "expr",
         "threshold-missing", "expr-threshold"],
)  # fmt: skip
def test_a_bad_rule_is_refused_naming_the_field(
    monitored: Callable[..., tuple[Node, Cluster]], rule: dict[str, Any], message: str
) -> None:
    node, _cluster = monitored()
    with pytest.raises(macp.InvalidParams, match=f"^{re.escape(message)}$"):
        node.ask("monitor", ADD_RULE, rule).get()
    assert node.ask("monitor", RULES).get() == []


# -- history and Prometheus -----------------------------------------------------------------


def test_history_gives_a_metrics_samples_in_time_order_within_the_duration(
    monitored: Callable[..., tuple[Node, Cluster]],
) -> None:
    node, _cluster = monitored()
    metric = "coordinator.queue_depth"
    wait_until(lambda: len(_history(node, metric, 60)) >= 8, 10, "too few samples recorded")
    before = now_ms()
    recent = _history(node, metric, 0.35)
    after = now_ms()
    everything = _history(node, metric, 60)
    stamps = [ts for ts, _ in everything]
    assert stamps == sorted(set(stamps))  # in time order, one sample per tick
    assert recent
    start = stamps.index(recent[0][0])
    assert recent == everything[start : start + len(recent)]
    assert all(ts >= before - 350 for ts, _ in recent)
    assert start > 0
    assert everything[start - 1][0] < after - 350  # left out only because it was older
    assert {value for _, value in everything} == {0.0}
    assert _history(node, "no.such.metric", 60) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"since_s": 5}, "monitor.history needs a 'metric' name and 'since_s'"),
        ({"metric": "coordinator.queue_depth", "since_s": "5"},
         "'since_s' must be a number of seconds"),
        ({"metric": "coordinator.queue_depth", "since_s": True},
         "'since_s' must be a number of seconds"),
    ],
    ids=["metric", "since_s-string", "since_s-bool"],
)  # fmt: skip
def test_a_bad_history_question_is_refused_naming_the_field(
    monitored: Callable[..., tuple[Node, Cluster]], body: dict[str, Any], message: str
) -> None:
    node, _cluster = monitored()
    with pytest.raises(macp.InvalidParams, match=f"^{re.escape(message)}$"):
        node.ask("monitor", HISTORY, body).get()


def test_prometheus_serves_the_completion_counters_and_the_gauges(
    monitored: Callable[..., tuple[Node, Cluster]],
) -> None:
    node, cluster = monitored(prometheus_port=0)  # a free port
    _spawn(node, cluster, coin=Coin)
    _maybe(cluster, [False, True, False, True, False])
    counted = {"tasks.throughput{type=maybe}": 5 / WINDOW_S}
    wait_until(lambda: _shows(node, counted), 10, "the outcomes were not counted")
    port = node.ask("monitor", PROMETHEUS).get()["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def completions(kind: str, name: str, outcome: str) -> float:
        labels = (("kind", kind), ("name", name), ("outcome", outcome))
        return samples[("macp_completions_total", labels)]

    assert completions("tasks", "maybe", "ok") == 3
    assert completions("tasks", "maybe", "failed") == 2
    assert completions("agent", "coin@head", "ok") == 3
    assert completions("agent", "coin@head", "failed") == 2
    assert samples[("macp_duration_seconds_count", (("kind", "tasks"), ("name", "maybe")))] == 5
    assert samples[("macp_tasks_error_rate", (("type", "maybe"),))] == 0.4
    assert samples[("macp_coordinator_queue_depth", ())] == 0
    assert ("macp_node_memory_rss_bytes", (("node", "head"),)) in samples


def test_a_prometheus_port_in_use_is_refused_before_anything_starts(
    make_node: Callable[..., Node], tmp_path: Path
) -> None:
    node = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(macp.ConfigError) as caught:
            start_control_plane(node, journal=tmp_path / "j.sqlite3",
                                monitor={"prometheus_port": port})  # fmt: skip
    assert caught.value.message == (
        f"monitor prometheus_port {port} on 127.0.0.1 cannot be used (Address already in use); "
        "pick a free port, or 0 for any"
    )
    assert node.agents() == []  # no control plane left half-started


@pytest.mark.parametrize(
    ("port", "message"),
    [
        (70000, "must be less than or equal to 65535"),
        (-1, "must be greater than or equal to 0"),
        ("9100", "must be an integer"),
        (True, "must be an integer"),
    ],
)
def test_a_prometheus_port_that_is_no_port_number_is_refused(
    make_node: Callable[..., Node], port: Any, message: str
) -> None:
    node = make_node("head")
    with pytest.raises(macp.ConfigError, match=f"^monitor: 'prometheus_port' {message}$"):
        start_control_plane(node, monitor={"prometheus_port": port})
    assert node.agents() == []


def test_node_start_serves_prometheus_with_the_flags_and_refuses_them_without_a_control_plane(
    procs: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    head = procs("head", "--control-plane", "--journal", str(tmp_path / "j.sqlite3"),
                 "--prometheus-port", "0", *QUICK_CLUSTER_FLAGS)  # fmt: skip
    wait_until(lambda: head.logs("monitor.prometheus"), 10, "the monitor serves no metrics")
    (served,) = head.logs("monitor.prometheus")
    assert served["addr"] == "127.0.0.1"
    url = f"http://127.0.0.1:{served['port']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        families = {f.name for f in text_string_to_metric_families(response.read().decode())}
    assert {"macp_completions", "macp_duration_seconds"} <= families

    done = subprocess.run(
        [sys.executable, "-m", "macp", "node", "start", "--name", "w", "--listen",
         "tcp://127.0.0.1:0", "--prometheus-port", "9100", "--journal", "j.sqlite3"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.endswith(
        "error: --journal, --prometheus-port configure the control plane: add --control-plane, "
        "or drop them\n"
    )
