"""A real cluster in which each waiting reason can be produced: a topology file's nodes as
`macp node start --config` processes (a head, workers w1 and w2), started once per test module,
and the tasks that make a task wait for each reason.

w1 runs ``sq`` (a Squarer: paused, its tasks wait ``all_paused``), ``gate`` (a Gate: with
``max_in_flight: 1`` a second ``wait_file`` task waits ``all_busy``), ``flaky`` (an Echo: two
failures open its breaker, so a task pinned to it waits ``breakers_open``), ``sleeper`` (an
Echo that times out on ``hang``) and ``runner`` (an Echo for workflow steps); w2 runs
``doomed`` (a Cruncher: w2 killed, ``crunch`` waits ``node_down``). The head has a pool
``gpu`` of 1 (held, a resource-aware step waits ``pool_exhausted``) and an alert rule on
failed ``fail`` tasks.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from topology_procs import ROOT, TopologyNodes

from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import macp

__all__ = ["AGENTS", "HOLD_GPU", "TOPOLOGY", "history_nodes", "wait_code", "write_topology"]

TOPOLOGY = textwrap.dedent("""\
    name: history
    nodes:
      - {name: head, listen: "tcp://127.0.0.1:0", head: true}
      - {name: w1, listen: "tcp://127.0.0.1:0"}
      - {name: w2, listen: "tcp://127.0.0.1:0"}
    agents:
      - {name: sq, class: "agents:Squarer", node: w1}
      - {name: gate, class: "agents:Gate", node: w1}
      - {name: flaky, class: "agents:Echo", node: w1}
      - {name: sleeper, class: "agents:Echo", node: w1}
      - {name: runner, class: "agents:Echo", node: w1}
      - {name: doomed, class: "agents:Cruncher", node: w2}
    resources: {gpu: 1}
    coordinator: {max_in_flight: 1, breaker_failures: 2, breaker_cooldown_s: 600}
    monitor:
      sample_s: 0.2
      rules:
        - {name: fail-failed, expr: "tasks.failed{type=fail} > 0", cooldown_s: 600}
    settings: {heartbeat_interval_s: 0.1, acceptable_pause_s: 0.3}
""")
AGENTS = {"sq@w1", "gate@w1", "flaky@w1", "sleeper@w1", "runner@w1", "doomed@w2"}
HOLD_GPU = {
    "name": "gpu-job",
    "steps": [
        {"id": "prep", "type": "echo", "body": {"x": 2}, "agent": "runner@w1"},
        {"id": "train", "type": "echo", "body": {"x": 3}, "agent": "runner@w1",
         "depends_on": ["prep"], "resources": {"gpu": 1}},
    ],
}  # fmt: skip
"""A workflow whose second step needs the whole pool (run resource-aware while it is held)."""


def write_topology(folder: Path) -> Path:
    path = folder / "history.yaml"
    path.write_text(TOPOLOGY, encoding="utf-8")
    return path


def _env(folder: Path) -> dict[str, str]:
    import os

    path = os.pathsep.join(p for p in [str(ROOT / "tests"), os.environ.get("PYTHONPATH")] if p)
    return {**os.environ, "MACP_DATA_DIR": str(folder / "data"), "PYTHONPATH": path}


@pytest.fixture(scope="module")
def history_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TopologyNodes]:
    """The topology running, its agents registered; every node killed at the module's end."""
    folder = tmp_path_factory.mktemp("history")
    nodes = TopologyNodes(str(write_topology(folder)), ["head", "w1", "w2"], _env(folder))
    try:
        yield nodes.start(AGENTS)
    finally:
        nodes.kill()


def wait_code(read: Callable[[], dict[str, Any]], code: str, what: str) -> dict[str, Any]:
    """``read()`` (a task's status or row) once its ``wait`` has ``code``; the last read."""
    last: list[dict[str, Any]] = [{}]

    def waits() -> bool:
        last[0] = read()
        return bool((last[0].get("wait") or {}).get("code") == code)

    wait_until(waits, 15, f"{what} does not wait with {code}: {last}")
    return last[0]


def task_row(cluster: macp.Cluster, task_id: str) -> dict[str, Any]:
    """The row ``coordinator.tasks`` lists for ``task_id`` (a query by its type, newest first)."""
    status = cluster.status(task_id)
    rows = cluster.tasks(type=status["type"])
    return next(r for r in rows if r["id"] == task_id)
