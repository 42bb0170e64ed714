"""A workflow outlives its head: the head is killed (-9) with steps in flight, restarted on the
same address and journal, and the run finishes with every step's output exactly once, in order,
without running again any step the journal had as done."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from macp.store import Journal
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp.testing import LocalCluster

pytestmark = pytest.mark.fault

N = 2_000_000  # tens of ms of arithmetic per step: some step is almost always in flight
CHECK = sum(i * i for i in range(N)) % 997

Shape = list[tuple[str, list[str]]]  # (step, the steps it depends on), in output order
CHAIN: Shape = [("s1", []), *((f"s{i}", [f"s{i - 1}"]) for i in range(2, 11))]
DIAMOND: Shape = [*CHAIN[:3], ("s4a", ["s3"]), ("s4b", ["s3"]), ("s5", ["s4a", "s4b"]),
                  *CHAIN[5:9]]  # fmt: skip


def _definition(shape: Shape) -> dict[str, Any]:
    steps = [
        {"id": step, "type": "chain", "depends_on": deps,
         "body": {"step": step, "n": N, "deps": {d: f"${{deps.{d}}}" for d in deps}}}
        for step, deps in shape
    ]  # fmt: skip
    return {"name": "shape", "strategy": "parallel", "steps": steps}


def _states(steps: dict[str, Any]) -> dict[str, str]:
    return {step: record["state"] for step, record in steps.items()}


@pytest.mark.parametrize("shape", [CHAIN, DIAMOND], ids=["chain", "diamond"])
def test_a_workflow_in_flight_when_the_head_is_killed_finishes_with_every_step_once(
    local_cluster: Callable[..., LocalCluster], tmp_path: Path, shape: Shape
) -> None:
    names = [step for step, _ in shape]
    journal = tmp_path / "j.sqlite3"
    chainers = {name: {f"c{name}": "agents:Chainer"} for name in ("w1", "w2")}
    local = local_cluster(chainers, processes=True, journal=journal)
    cluster = local.cluster
    assert cluster.define(_definition(shape)) == names
    run = cluster.run("shape")

    def three_done() -> bool:
        return list(_states(run.status()["steps"]).values()).count("succeeded") >= 3

    wait_until(three_done, 30, "the first three steps did not finish")
    local.kill("head")

    with Journal(journal).open() as kept:
        record = kept.get_workflow(run.id)
    assert record is not None
    assert record["state"] == "running"
    steps_at_kill: Any = record["steps"]
    at_kill = _states(steps_at_kill)
    done_at_kill = [s for s in names if at_kill[s] == "succeeded"]
    in_flight_at_kill = [s for s in names if at_kill[s] == "running"]
    assert len(done_at_kill) >= 2, at_kill
    assert in_flight_at_kill, f"no step was in flight at the kill: nothing proved {at_kill}"

    local.restart("head")  # on its address and its journal
    assert run.result(timeout_s=60) == {names[-1]: {"seen": names, "check": CHECK}}
    status = run.status()
    assert status["state"] == "succeeded"
    assert _states(status["steps"]) == dict.fromkeys(names, "succeeded")
    logs = {s: cluster.status(status["steps"][s]["task_id"])["log"] for s in names}
    recovered = [s for s in names if any(e["event"] == "recovered" for e in logs[s])]
    assert recovered == in_flight_at_kill

    ran: Counter[str] = Counter()

    def every_step_logged() -> bool:
        ran.clear()
        ran.update(r["step"] for w in chainers for r in local.process(w).logs("chain.ran"))
        return set(ran) == set(names)

    wait_until(every_step_logged, 10, "some step never logged that it ran")
    assert all(ran[s] == 1 for s in done_at_kill), ran  # the journal had them: never run again
    assert all(1 <= ran[s] <= 2 for s in names), ran
