"""A soak, bounded: a head and two workers run tasks continuously while one worker is killed
(SIGKILL) and restarted over and over, and the head once; at the end every task submitted has
completed exactly once, and the restarted head's memory is what the first one's was."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import psutil
import pytest

import macp
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp.testing import LocalCluster, NodeProcess

pytestmark = pytest.mark.fault

N = 50_000  # about 5 ms of work per task
CHECK = sum(i * i for i in range(N)) % 997
WORKER_KILLS = 12  # w1 is killed and restarted this many times; the head once, with the fourth
HEAD_KILL = 4
PROGRESS = 50  # tasks the agents complete between two kills
PACE_S = 0.03  # between two submissions: about 30 tasks a second, all along
RSS_SLACK = 16 * 2**20  # bytes the restarted head may hold beyond what the first one held


class _Submitter(threading.Thread):
    """Submits ``tally`` tasks one after the other until told to stop, each with an idempotency
    key of its own; one in five is pinned to ``t1@w1``. While the head is down a submission
    fails: it is made again, with the same key, once the head is back (so a task the head
    journaled before dying is not submitted twice)."""

    def __init__(self, address: str, directory: Path) -> None:
        super().__init__(name="soak-submitter", daemon=True)
        self.address = address
        self.directory = str(directory)
        self.stop = threading.Event()
        self.ids: dict[int, str] = {}  # the key's number -> the task id
        self.resubmitted = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._submit_until_stopped()
        except BaseException as e:  # handed to the test, which raises it
            self.error = e

    def _submit_until_stopped(self) -> None:
        cluster: macp.Cluster | None = None
        k = 0
        while not self.stop.is_set():
            if cluster is None:
                cluster = self._connect()
                continue
            pinned = "t1@w1" if k % 5 == 0 else None
            body: dict[str, macp.Wire] = {"k": k, "n": N, "dir": self.directory}
            try:
                task = cluster.submit(
                    "tally", body, agent=pinned, idempotency_key=f"soak-{k}", max_retries=1
                )
            except macp.MacpError:  # the head is down: again, with the same key
                self.resubmitted += 1
                cluster.close()
                cluster = None
                continue
            self.ids[k] = task.id
            k += 1
            self.stop.wait(PACE_S)
        if cluster is not None:
            cluster.close()

    def _connect(self) -> macp.Cluster | None:
        try:
            return macp.connect(self.address, timeout_s=2)
        except macp.MacpError:
            self.stop.wait(0.1)  # the head is not back yet
            return None


def _wait_progress(done: Path, message: str) -> None:
    """Wait until the agents have completed PROGRESS more attempts."""
    start = len(list(done.iterdir()))
    wait_until(lambda: len(list(done.iterdir())) >= start + PROGRESS, 60, message)


def _kill_w1(local: LocalCluster) -> None:
    """SIGKILL w1, and wait until the head's coordinator knows it is down."""
    known = _downs(local.process("head"))
    local.kill("w1")
    wait_until(
        lambda: _downs(local.process("head")) > known,
        10,
        "the coordinator did not learn w1 went down",
    )


def _downs(head: NodeProcess) -> int:
    """How many times the head's coordinator has learned that w1 went down."""
    return sum(1 for r in head.logs("coordinator.node_down") if r.get("node") == "w1")


def _rss(proc: NodeProcess) -> int:
    assert proc.proc is not None
    return int(psutil.Process(proc.proc.pid).memory_info().rss)


def test_tasks_complete_exactly_once_while_a_worker_is_killed_again_and_again_and_the_head_once(
    local_cluster: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    done = tmp_path / "done"  # one file per attempt the agents completed, TASK.ATTEMPT
    done.mkdir()
    tallies = {"t1": "agents:Tally", "t2": "agents:Tally"}
    local = local_cluster({"w0": tallies, "w1": tallies}, processes=True, timeout_s=30)
    address = local.address("head")
    cluster = local.cluster
    submitter = _Submitter(address, done)
    submitter.start()
    rss_before = 0
    try:
        for kill in range(1, WORKER_KILLS + 1):
            _wait_progress(done, f"no progress before kill {kill}")
            _kill_w1(local)
            if kill == HEAD_KILL:  # with w1 down and tasks pinned to it waiting
                wait_until(
                    lambda: cluster.tasks(states=["pending"]), 10, "no task pinned to w1 waits"
                )
                rss_before = _rss(local.process("head"))
                local.restart("head")  # killed, then started on its address and journal
            local.restart("w1")
    finally:
        submitter.stop.set()
        submitter.join(30)
    if submitter.error is not None:
        raise submitter.error
    ids = submitter.ids
    results = {k: cluster.result(task_id, timeout_s=60) for k, task_id in ids.items()}
    statuses = {k: cluster.status(task_id) for k, task_id in ids.items()}
    listed = sorted(t["id"] for t in cluster.tasks())
    rss_after = _rss(local.process("head"))

    ran: dict[str, set[int]] = {}  # what the agents completed: task id -> attempts
    for record in done.iterdir():
        task_id, _, attempt = record.name.partition(".")
        ran.setdefault(task_id, set()).add(int(attempt))
    assert len(set(ids.values())) == len(ids)  # one task per key, the head's restart included
    assert listed == sorted(ids.values())  # none lost, none added
    assert set(ran) == set(ids.values())  # the agents ran these and nothing else
    for k, status in statuses.items():
        task_id = status["id"]
        assert (status["state"], results[k]["k"], results[k]["check"]) == ("succeeded", k, CHECK)
        # the completion that counted is the last attempt, one an agent recorded (each
        # attempt at most once: the files are created exclusively)
        assert results[k]["attempt"] == status["attempts"] == max(ran[task_id])
        # every attempt before it was lost with its node (w1, or the head): none failed
        assert status["attempts"] - status["node_failures"] == 1, status
    lost = [s for s in statuses.values() if s["node_failures"]]
    assert len(lost) >= WORKER_KILLS, "too few tasks lost their node: the soak proved little"
    recovered = [s for s in statuses.values() if any(e["event"] == "recovered" for e in s["log"])]
    assert recovered, "no task was unfinished when the head was killed: the soak proved little"
    assert rss_after <= rss_before + RSS_SLACK, (rss_before, rss_after)
