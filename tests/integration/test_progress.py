"""Long work followed on a terminal: `macp up --task`, `macp run --task` and `macp run
--workflow` draw a live line on standard error when it is a terminal (a pseudo-terminal here),
and nothing when it is piped; the result on standard output is the same JSON either way."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import pytest
from topology_procs import ROOT, TopologyNodes, macp_cli, node_processes

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PEERS_AGENTS = {"analyst@alpha", "factorer-1@beta", "factorer-2@beta", "statistician@beta"}


def on_terminal(
    *args: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[bytes], list[str]]:
    """Run ``macp ARGS`` with standard error on a pseudo-terminal (read as it is written, so
    the program never blocks on a full one) and standard output on a pipe: the finished
    process, and every line the terminal showed (escape sequences removed, in order)."""
    screen_fd, stderr_fd = pty.openpty()
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(screen_fd, 4096)
            except OSError:  # EIO: the terminal's last writer has closed it
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "macp", *args], cwd=ROOT, env={**env, "COLUMNS": "160"},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_fd, timeout=90,
            check=False,
        )  # fmt: skip
    finally:
        os.close(stderr_fd)
        reader.join(10)
        os.close(screen_fd)
    text = _ANSI.sub("", shown.decode(errors="replace"))
    lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
    return done, lines


@pytest.fixture
def peers(env: dict[str, str]) -> Iterator[TopologyNodes]:
    nodes = TopologyNodes("examples/peers/topology.yaml", ["alpha", "beta"], env)
    nodes.start(PEERS_AGENTS)
    yield nodes
    nodes.kill()


def test_a_workflow_run_on_a_terminal_ends_on_its_steps_done_and_the_time_it_took(
    peers: TopologyNodes,
) -> None:
    done, lines = on_terminal(
        "run", peers.file, "--connect", peers.head, "--workflow", "summary",
        "--input", json.dumps({"numbers": [4, 9], "n": 12}), env=peers.env,
    )  # fmt: skip
    assert done.returncode == 0, lines
    assert json.loads(done.stdout) == {"combine": {"largest_factor": 3, "mean": 6.5}}
    assert re.fullmatch(r"done workflow summary succeeded\s.*\s3/3 \d:\d\d:\d\d", lines[-1]), lines


def test_a_task_run_on_a_terminal_shows_its_progress_up_to_its_end(peers: TopologyNodes) -> None:
    done, lines = on_terminal(
        "run", peers.file, "--connect", peers.head, "--task", json.dumps({"numbers": [12, 35]}),
        env=peers.env,
    )  # fmt: skip
    assert done.returncode == 0, lines
    assert json.loads(done.stdout)["factors"] == {"12": [2, 2, 3], "35": [5, 7]}
    assert re.fullmatch(r"done task \S+ succeeded\s.*\s100/100 \d:\d\d:\d\d.*", lines[-1]), lines


def test_up_with_a_task_on_a_terminal_counts_its_subtasks_then_prints_only_its_result(
    env: dict[str, str],
) -> None:
    task = json.dumps({"corpus": "examples/wordcount/corpus", "top": 2})
    done, lines = on_terminal("up", "examples/wordcount/topology.yaml", "--task", task, env=env)
    assert done.returncode == 0, lines
    assert len(json.loads(done.stdout)["top"]) == 2
    ended = [line for line in lines if line.startswith("done task ")]
    assert len(ended) == 1, lines
    # the splitter is a hub: the bar counts its parts, each a subtask of the task
    parts = re.search(r"succeeded \(subtasks\)\s.*\s(\d+)/(\d+) \d:\d\d:\d\d", ended[0])
    assert parts, lines
    assert (parts[1] == parts[2], int(parts[2]) >= 2) == (True, True), ended
    assert node_processes(env["MACP_DATA_DIR"]) == []


def test_piped_standard_error_gets_no_progress_only_the_result_on_standard_output(
    peers: TopologyNodes,
) -> None:
    for args in (
        ("--workflow", "summary", "--input", json.dumps({"numbers": [4, 9], "n": 12})),
        ("--task", json.dumps({"numbers": [12]})),
    ):
        done = macp_cli("run", peers.file, "--connect", peers.head, *args, env=peers.env)
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        json.loads(done.stdout)
