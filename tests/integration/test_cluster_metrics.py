"""The monitor through the Cluster API: its figures and its firing alerts (``metrics``), and
each agent's message counts over a window (``message_rates``), from real traffic to an agent on
another node process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS

import macp
from macp import Agent, Cluster, handler, start_control_plane
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

WINDOW_S = 30.0


class Coin(Agent):
    @handler("maybe")
    def maybe(self, body: dict[str, Any]) -> int:
        if body["fail"]:
            raise RuntimeError("fails on purpose")
        return 1


def _head(make_node: Callable[..., Node], tmp_path: Path) -> tuple[Node, Cluster]:
    node = make_node("head", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    monitor = {"sample_s": 0.1, "window_s": WINDOW_S}
    start_control_plane(node, journal=tmp_path / "j.sqlite3", monitor=monitor)
    return node, Cluster(node)


def test_metrics_are_the_monitors_figures_with_the_alerts_firing_now(
    make_node: Callable[..., Node], tmp_path: Path
) -> None:
    node, cluster = _head(make_node, tmp_path)
    node.spawn(Coin, "coin")
    cluster.wait_for_agents(["coin@head"], timeout_s=10)
    node.ask("monitor", "monitor.add_rule", {
        "name": "failures", "expr": "tasks.failed{type=maybe} > 0", "cooldown_s": 0,
    }).get()  # fmt: skip
    assert cluster.metrics()["alerts"] == []
    task = cluster.submit("maybe", {"fail": True}, max_retries=0)
    with pytest.raises(macp.PoisonMessage, match=r"failed 1 times; last: AgentError"):
        task.result()
    wait_until(lambda: cluster.metrics()["alerts"], 10, "the rule never fired")
    figures = cluster.metrics()
    assert figures["metrics"]["tasks.failed{type=maybe}"] == 1.0
    [alert] = figures["alerts"]
    assert alert == {
        "name": "failures", "metric": "tasks.failed{type=maybe}", "op": ">", "threshold": 0.0,
        "for_s": 0.0, "cooldown_s": 0.0, "firing": True, "value": 1.0,
    }  # fmt: skip


def test_message_rates_count_what_each_agent_took_over_the_window(
    make_node: Callable[..., Node], tmp_path: Path, procs: Callable[..., NodeProcess]
) -> None:
    node, cluster = _head(make_node, tmp_path)
    procs("n2", "--head", "head", "--peer", f"head={node.address}", *QUICK_CLUSTER_FLAGS,
          "--agent", "busy=agents:Echo", "--agent", "quiet=agents:Echo")  # fmt: skip
    cluster.wait_for_agents(["busy@n2", "quiet@n2"], timeout_s=15)
    sampled = {"agent.messages{agent=busy@n2}": 0.0, "agent.messages{agent=quiet@n2}": 0.0}
    wait_until(lambda: sampled.items() <= cluster.metrics()["metrics"].items(), 10,
               "the monitor never sampled the two agents' counts")  # fmt: skip
    before = cluster.message_rates(window_s=WINDOW_S)
    assert before["busy@n2"]["messages"] == before["quiet@n2"]["messages"] == 0
    for i in range(40):
        node.ask("busy@n2", "echo", i).get()
    for i in range(3):
        node.ask("quiet@n2", "echo", i).get()
    with pytest.raises(macp.AgentError, match=r"cannot handle 'x'"):  # a failure counts too
        node.ask("quiet@n2", "fail", "x").get()

    def counted() -> bool:
        rates = cluster.message_rates(window_s=WINDOW_S)
        return (
            rates.get("busy@n2", {}).get("messages"),
            rates.get("quiet@n2", {}).get("messages"),
        ) == (40, 4)

    wait_until(counted, 10, "the monitor never counted 40 and 4 messages")
    rates = cluster.message_rates(window_s=WINDOW_S, flood_per_s=1.0)
    assert rates["busy@n2"]["rate_per_s"] == pytest.approx(40 / WINDOW_S)
    assert rates["busy@n2"]["flood"] is True  # 40 / 30 s > 1 a second
    assert rates["quiet@n2"]["flood"] is False
    assert rates["busy@n2"]["total"] == 40
    assert 0 < rates["busy@n2"]["span_s"] <= WINDOW_S


def test_message_rates_refuse_a_window_that_is_not_a_positive_number(
    make_node: Callable[..., Node], tmp_path: Path
) -> None:
    _node, cluster = _head(make_node, tmp_path)
    with pytest.raises(macp.InvalidParams, match=r"^'window_s' must be a number of seconds > 0"):
        cluster.message_rates(window_s=0)
