"""The README's tour, run top to bottom as written: each command must succeed, in order, against
a real cluster (its `macp up` in the background, on ports the test picks)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from topology_procs import ROOT, TopologyNodes, free_ports, macp_cli, node_processes, unlogged

from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

PLACEHOLDER = "tcp://127.0.0.1:PORT"


def tour() -> list[list[str]]:
    """The commands of the README's tour (its first ``sh`` block after "## A tour"), each split
    as the shell would (comments dropped, continuation lines joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.partition("\n## A tour\n")[2]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's tour has no sh block"
    joined = block.group(1).replace("\\\n", " ")
    return [args for line in joined.splitlines() if (args := shlex.split(line, comments=True))]


def test_the_tour_is_found_and_every_line_is_a_macp_command() -> None:
    commands = tour()
    assert len(commands) >= 5
    assert {args[0] for args in commands} == {"macp"}
    serving = [args for args in commands if args[:2] == ["macp", "up"] and "--task" not in args]
    assert len(serving) == 1, "the tour starts one topology that runs until Ctrl-C"


class _Serving:
    """The tour's `macp up` without a task, in the background; its head address once up."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "macp", *args], cwd=ROOT, env=env, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr as err:
            self.err.extend(err)

    def head(self) -> str:
        up = re.compile(r".* is up: \d+ nodes, head at (tcp://\S+); Ctrl-C stops it\n")
        wait_until(lambda: any(up.fullmatch(line) for line in self.err) or
                   self.proc.poll() is not None, 90, "macp up did not say it is up")  # fmt: skip
        found = next((m for line in self.err if (m := up.fullmatch(line))), None)
        assert found is not None, "".join(self.err)
        return found[1]


@pytest.fixture
def serving(env: dict[str, str]) -> Iterator[list[_Serving]]:
    started: list[_Serving] = []
    yield started
    for up in started:
        if up.proc.poll() is None:
            up.proc.kill()
        up.proc.communicate(timeout=10)
        up.reader.join(10)


def test_the_readme_tour_runs_top_to_bottom_as_written(
    env: dict[str, str], serving: list[_Serving]
) -> None:
    alpha, beta = free_ports(2)  # the peers example's head and worker
    env = {**env, "PEERS_ALPHA_PORT": str(alpha), "PEERS_BETA_PORT": str(beta)}
    head = None
    for written in tour():
        shown = shlex.join(written)
        if written[:2] == ["macp", "up"] and "--task" not in written:
            serving.append(_Serving(written[1:], env))
            head = serving[-1].head()
            assert head == f"tcp://127.0.0.1:{alpha}", shown
            continue
        if PLACEHOLDER in written:
            assert head is not None, f"{shown}: no topology is up yet"
        args = [head if arg == PLACEHOLDER and head else arg for arg in written]
        done = macp_cli(*args[1:], env=env, timeout_s=120)
        assert (done.returncode, unlogged(done.stderr)) == (0, []), (shown, done.stderr)
        if args[1] in ("up", "run", "control"):
            json.loads(done.stdout)  # a result, printed as JSON
        else:
            assert done.stdout, shown
    assert serving, "the tour never started a topology to connect to"
    up = serving[0]
    up.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert up.proc.wait(30) == 0
    up.reader.join(10)
    assert unlogged("".join(up.err)) == [f"peers is up: 2 nodes, head at {head}; Ctrl-C stops it"]
    assert node_processes(env["MACP_DATA_DIR"]) == []


def python_snippet(lead: str) -> str:
    """The README's first ``python`` block after the line that starts with ``lead``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.partition(f"\n{lead}")[2]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None, f"the README has no python block after {lead!r}"
    return block.group(1)


def test_the_readme_snippet_that_submits_to_a_hierarchy_prints_what_its_comments_say(
    env: dict[str, str],
) -> None:
    snippet = python_snippet("**Submitting to a topology from Python.**")
    said = [line.rpartition("# ")[2] for line in snippet.splitlines() if "print(" in line]
    agents = {"director@hq", "lead-a@team-a", "lead-b@team-b", "worker-a-1@team-a",
              "worker-a-2@team-a", "worker-b-1@team-b", "worker-b-2@team-b"}  # fmt: skip
    nodes = TopologyNodes("examples/hierarchy/topology.yaml", ["hq", "team-a", "team-b"], env)
    try:
        nodes.start(agents)
        code = snippet.replace(PLACEHOLDER, nodes.head)
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
    finally:
        nodes.stop()
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == said


def test_the_readme_mcp_client_snippet_prints_what_its_comments_say(env: dict[str, str]) -> None:
    snippet = python_snippet("**An MCP client in Python**")
    said = [line.rpartition("# ")[2] for line in snippet.splitlines() if "print(" in line]
    agents = {"analyst@alpha", "factorer-1@beta", "factorer-2@beta", "statistician@beta"}
    nodes = TopologyNodes("examples/peers/topology.yaml", ["alpha", "beta"], env)
    bin_dir = str(Path(sys.executable).parent)  # where the `macp` command is installed
    env = {**env, "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")])}
    try:
        nodes.start(agents)
        code = snippet.replace(PLACEHOLDER, nodes.head)
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
    finally:
        nodes.stop()
    assert done.returncode == 0, done.stderr
    assert unlogged(done.stderr) == []
    assert done.stdout.splitlines() == said
