"""The models agents run on, on a live cluster: declared by the class or the topology file
(registry fields, find_agents filters), reported from handlers with ``ctx.report``, aggregated
by the monitor per model and per agent (model_metrics, model_health), watched by alert rules,
and scraped from the Prometheus endpoint."""

from __future__ import annotations

import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS, TESTS
from prometheus_client.parser import text_string_to_metric_families
from topology_procs import free_ports

import macp
from macp import Agent, Cluster, start_control_plane
from macp.actors.monitor import PROMETHEUS
from macp.testing import NodeProcess, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node

pytestmark = pytest.mark.integration

WINDOW_S = 30.0  # nothing leaves the window during a test


@pytest.fixture
def head(make_node: Callable[..., Node], tmp_path: Path) -> Callable[..., tuple[Node, Cluster]]:
    """Start a head in this process whose monitor samples every 0.1 s, with the monitor
    options given."""

    def start(**monitor: Any) -> tuple[Node, Cluster]:
        node = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
        options = {"sample_s": 0.1, "window_s": WINDOW_S, **monitor}
        start_control_plane(node, journal=tmp_path / "j.sqlite3", monitor=options)
        return node, Cluster(node)

    return start


def _worker(procs: Callable[..., NodeProcess], node: Node, name: str, **agents: str) -> list[str]:
    """Start node process ``name`` with ``agents`` (``name=model_agents:Class``); their
    addresses."""
    flags = [flag for agent, cls in agents.items() for flag in ("--agent", f"{agent}={cls}")]
    procs(name, "--head", "head", "--peer", f"head={node.address}", *QUICK_CLUSTER_FLAGS, *flags)
    return [f"{agent}@{name}" for agent in agents]


def _addresses(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["address"] for r in records)


def _labels(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the Prometheus endpoint, by name and labels, fetched by a real GET."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_figures_reported_by_agents_on_two_nodes_are_counted_per_model_and_per_agent(
    head: Callable[..., tuple[Node, Cluster]], procs: Callable[..., NodeProcess]
) -> None:
    node, cluster = head(prometheus_port=0)
    m1 = _worker(procs, node, "w1", m1="model_agents:Llm")
    m2, c2 = _worker(procs, node, "w2", m2="model_agents:Llm", c2="model_agents:Classifier")
    cluster.wait_for_agents([*m1, m2, c2], timeout_s=15)
    assert _addresses(cluster.find(model_type="llm")) == ["m1@w1", "m2@w2"]
    assert _addresses(cluster.find(model_type="llm", model_version="2")) == ["m1@w1", "m2@w2"]
    assert _addresses(cluster.find(model_type="llm", model_version="1")) == []
    [clf] = cluster.find(model_type="clf")
    assert (clf["address"], clf["model_type"], clf["model_version"]) == ("c2@w2", "clf", "1")

    for ms in (10, 20, 30):
        assert node.ask("m1@w1", "infer", {"inference_ms": ms, "tokens_in": 100,
                                           "tokens_out": 10}).get() == "m1@w1"  # fmt: skip
    node.ask("m2@w2", "infer", {"inference_ms": 40, "tokens_in": 50, "error": "timeout"}).get()
    node.ask("c2@w2", "infer", {"inference_ms": 5}).get()
    wait_until(lambda: cluster.model_metrics()["models"].get("llm@2", {}).get("reports") == 4, 10,
               "the monitor never counted the four llm reports")  # fmt: skip
    figures = cluster.model_metrics()["models"]
    agents = cluster.model_metrics()["agents"]
    assert sorted(figures) == ["clf@1", "llm@2"]
    llm = figures["llm@2"]
    assert {k: llm[k] for k in ("reports", "errors", "tokens_in", "tokens_out")} == {
        "reports": 4, "errors": 1, "tokens_in": 350, "tokens_out": 30,
    }  # fmt: skip
    assert llm["error_rate"] == 0.25
    assert (llm["inference_p50_ms"], llm["inference_p95_ms"], llm["inference_p99_ms"]) == (
        20.0, 40.0, 40.0,
    )  # fmt: skip
    assert llm["tokens_in_per_s"] == pytest.approx(350 / WINDOW_S)
    assert llm["tokens_out_per_s"] == pytest.approx(30 / WINDOW_S)
    assert llm["agents"] == ["m1@w1", "m2@w2"]
    assert sorted(agents) == ["c2@w2", "m1@w1", "m2@w2"]
    own = agents["m2@w2"]
    assert (own["reports"], own["errors"], own["error_rate"], own["last_error"]) == (
        1, 1, 1.0, "timeout",
    )  # fmt: skip
    assert (agents["m1@w1"]["reports"], agents["m1@w1"]["last_error"]) == (3, None)
    assert (agents["m1@w1"]["models"], agents["c2@w2"]["models"]) == (["llm@2"], ["clf@1"])
    assert agents["m1@w1"]["tokens_in_per_s"] == pytest.approx(300 / WINDOW_S)
    assert figures["clf@1"]["reports"] == 1

    port = node.ask("monitor", PROMETHEUS).get()["port"]
    llm1 = _labels(agent="m1@w1", model="llm@2")
    llm2 = _labels(agent="m2@w2", model="llm@2")

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return _scrape(port)

    rate = ("macp_model_error_rate", _labels(model="llm@2"))
    wait_until(lambda: scraped().get(rate) == 0.25, 10,  # a sample after the four reports
               "the monitor never sampled the four llm reports")  # fmt: skip
    samples = scraped()
    assert samples["macp_model_reports_total", llm1] == 3
    assert samples["macp_model_errors_total", llm1] == 0
    assert samples["macp_model_errors_total", llm2] == 1
    assert (
        samples["macp_model_tokens_total", _labels(agent="m1@w1", model="llm@2", direction="in")]
        == 300
    )
    assert (
        samples["macp_model_tokens_total", _labels(agent="m1@w1", model="llm@2", direction="out")]
        == 30
    )
    assert (
        samples["macp_model_tokens_total", _labels(agent="m2@w2", model="llm@2", direction="in")]
        == 50
    )
    assert samples["macp_model_inference_seconds_count", llm1] == 3
    assert samples["macp_model_inference_seconds_sum", llm1] == pytest.approx(0.06)
    assert (
        samples[
            "macp_model_inference_seconds_bucket", _labels(agent="m1@w1", model="llm@2", le="0.01")
        ]
        == 1
    )
    assert (
        samples[
            "macp_model_inference_seconds_bucket", _labels(agent="m1@w1", model="llm@2", le="0.05")
        ]
        == 3
    )
    assert samples["macp_model_health", (("model", "clf@1"),)] == 0  # healthy


def test_an_alert_rule_on_a_models_error_rate_fires_and_its_health_follows(
    head: Callable[..., tuple[Node, Cluster]], procs: Callable[..., NodeProcess]
) -> None:
    rule = {"name": "llm-errors", "expr": "model.error_rate{model=llm@2} > 0.4", "cooldown_s": 0}
    node, cluster = head(rules=[rule], models={"degraded_p95_ms": 500})
    cluster.wait_for_agents(_worker(procs, node, "w1", m1="model_agents:Llm"), timeout_s=15)
    node.ask("m1@w1", "infer", {"inference_ms": 10}).get()
    wait_until(lambda: cluster.metrics()["metrics"].get("model.reports{model=llm@2}") == 1, 10,
               "the monitor never sampled the first report")  # fmt: skip
    assert cluster.metrics()["alerts"] == []
    assert cluster.model_health()["llm@2"]["status"] == "healthy"

    node.ask("m1@w1", "infer", {"inference_ms": 800, "error": True}).get()  # 1 of 2: failing
    wait_until(lambda: cluster.model_health()["llm@2"]["reports"] == 2, 10, "no second report")
    health = cluster.model_health()["llm@2"]
    assert (health["status"], health["reasons"]) == (
        "failing", ["error rate 0.50 >= 0.5"],
    )  # fmt: skip
    wait_until(lambda: cluster.metrics()["alerts"], 10, "the rule never fired")
    [alert] = cluster.metrics()["alerts"]
    assert (alert["name"], alert["metric"], alert["value"]) == (
        "llm-errors", "model.error_rate{model=llm@2}", 0.5,
    )  # fmt: skip

    for _ in range(3):  # 1 error in 5: under the rule's 0.4, degraded by latency (p95 800 ms)
        node.ask("m1@w1", "infer", {"inference_ms": 10, "tokens_out": 1}).get()
    wait_until(lambda: not cluster.metrics()["alerts"], 10, "the alert never resolved")
    wait_until(lambda: cluster.model_health()["llm@2"]["reports"] == 5, 10, "not 5 reports")
    health = cluster.model_health()["llm@2"]
    assert (health["status"], health["reasons"], health["error_rate"]) == (
        "degraded", ["error rate 0.20 >= 0.1", "p95 inference 800 ms >= 500 ms"], 0.2,
    )  # fmt: skip
    assert cluster.metrics()["metrics"]["model.health{model=llm@2}"] == 1.0


@pytest.mark.parametrize(
    ("figures", "message"),
    [
        ({"tokens_in": -1}, r"^ctx\.report's tokens_in must be a whole number >= 0, not -1$"),
        ({"tokens_out": 1.5}, r"^ctx\.report's tokens_out must be a whole number >= 0, not 1\.5$"),
        (
            {"inference_ms": "fast"},
            r"^ctx\.report's inference_ms must be a number >= 0, not 'fast'$",
        ),
        ({"error": 3}, r"^ctx\.report's error must be true/false or the error's text, not 3$"),
        (
            {"latency_ms": 3},
            (
                r"^ctx\.report has no figure 'latency_ms'; report inference_ms, tokens_in, "
                r"tokens_out, error$"
            ),
        ),
        (
            {},
            r"^ctx\.report needs at least one figure: inference_ms, tokens_in, tokens_out, error$",
        ),
    ],
)
def test_a_bad_report_is_refused_in_one_sentence_and_counts_nothing(
    head: Callable[..., tuple[Node, Cluster]],
    procs: Callable[..., NodeProcess],
    figures: dict[str, Any],
    message: str,
) -> None:
    node, cluster = head()
    cluster.wait_for_agents(_worker(procs, node, "w1", m1="model_agents:Llm"), timeout_s=15)
    with pytest.raises(macp.InvalidParams, match=message):
        node.ask("m1@w1", "infer", figures).get()
    node.ask("m1@w1", "infer", {"tokens_in": 7}).get()  # sent after: counted after the refusal
    wait_until(lambda: cluster.model_metrics()["models"], 10, "the good report was not counted")
    assert cluster.model_metrics()["models"]["llm@2"]["reports"] == 1


def test_an_agent_without_a_model_cannot_report(
    head: Callable[..., tuple[Node, Cluster]], procs: Callable[..., NodeProcess]
) -> None:
    node, cluster = head()
    cluster.wait_for_agents(_worker(procs, node, "w1", x="model_agents:Modelless"), 15)
    with pytest.raises(
        macp.InvalidParams,
        match=r"^ctx\.report needs the agent's model: x@w1 declares no model_type; set "
        r"model_type \(and model_version\) on its class or its topology entry$",
    ):
        node.ask("x@w1", "infer", {"tokens_in": 1}).get()
    [record] = cluster.find(node="w1")
    assert (record["model_type"], record["model_version"]) == (None, None)


TOPOLOGY = """\
name: models
nodes:
  - {{name: head, listen: "tcp://127.0.0.1:{port}", head: true}}
agents:
  - {{name: big, class: "model_agents:Llm", model_version: 3}}
  - {{name: plain, class: "model_agents:Modelless", model_type: rules, model_version: "2024"}}
  - {{name: llm, class: "model_agents:Llm"}}
settings: {{journal: {journal}}}
"""


def test_a_topology_entry_declares_the_model_its_agent_runs_on(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    file = tmp_path / "topology.yaml"
    journal = tmp_path / "j.sqlite3"
    file.write_text(TOPOLOGY.format(port=port, journal=journal), encoding="utf-8")
    with (
        NodeProcess("head", config=file, pythonpath=[TESTS], cwd=tmp_path),
        macp.connect(f"tcp://127.0.0.1:{port}") as cluster,
    ):
        cluster.wait_for_agents(["big@head", "plain@head", "llm@head"], timeout_s=15)
        models = {r["address"]: (r["model_type"], r["model_version"]) for r in cluster.agents()
                  if r["group"] != "control-plane"}  # fmt: skip
        assert models == {
            "big@head": ("llm", "3"), "plain@head": ("rules", "2024"), "llm@head": ("llm", "2"),
        }  # fmt: skip
        assert _addresses(cluster.find(model_type="llm")) == ["big@head", "llm@head"]
        assert cluster.ask("plain@head", "infer", {"tokens_in": 4}).get() == "plain@head"
        wait_until(lambda: "rules@2024" in cluster.model_metrics()["models"], 10, "not counted")
        assert cluster.model_metrics()["agents"]["plain@head"]["tokens_in"] == 4


def test_a_class_whose_model_version_is_not_text_is_refused_when_spawned(node: Node) -> None:
    class Numbered(Agent):
        model_type = "llm"
        model_version = 2  # type: ignore[assignment]

    with pytest.raises(
        macp.ConfigError,
        match=r"^Numbered\.model_version must be a string, not 2; e\.g\. model_version = '2'$",
    ):
        node.spawn(Numbered, "numbered")
    assert node.agents() == []
