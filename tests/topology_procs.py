"""A topology file's nodes as `macp node start --config` processes, and the `macp` command, for
the CLI and example tests; each test's processes are found by the MACP_DATA_DIR they inherit."""

from __future__ import annotations

import math
import re
import socket
import statistics
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Self

import psutil
import pytest

import macp
from macp.testing import NodeProcess, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PORTS = re.compile(r"^(WORDCOUNT|PIPELINE|PEERS|HIERARCHY)_\w+_PORT$")


def node_processes(data_dir: str) -> list[psutil.Process]:
    """The `macp node start` processes started for a test (they inherit its MACP_DATA_DIR)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if " node start " not in f" {' '.join(proc.info['cmdline'] or [])} ":
            continue
        try:
            if proc.environ().get("MACP_DATA_DIR") == data_dir:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def macp_cli(
    *args: str, env: dict[str, str], timeout_s: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m macp ARGS`` from the repository's root to its end."""
    return subprocess.run(
        [sys.executable, "-m", "macp", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(n)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def unlogged(stderr: str | list[str]) -> list[str]:
    """The lines of ``stderr`` that are not log records (JSON lines): errors, tracebacks."""
    lines = stderr.splitlines() if isinstance(stderr, str) else stderr
    return [line for line in lines if not line.startswith("{")]


def prime_factors(n: int) -> list[int]:
    found, d = [], 2
    while d * d <= n:
        while n % d == 0:
            found.append(d)
            n //= d
        d += 1
    return [*found, n] if n > 1 else found


def expected_analysis(numbers: list[int]) -> dict[str, Any]:
    """What the peers example answers for ``numbers``, computed here (small numbers)."""
    return {
        "factors": {str(n): prime_factors(n) for n in numbers},
        "stats": pytest.approx({
            "mean": statistics.mean(numbers),
            "median": statistics.median(numbers),
            "stdev": statistics.stdev(numbers),
        }),
        "primes": sorted(n for n in numbers if prime_factors(n) == [n]),
        "gcd": math.gcd(*numbers),
    }  # fmt: skip


class TopologyNodes:
    """Each node of a topology file as a `macp node start --config` process, on ports picked
    here; :meth:`start` returns once every node printed node.ready and every agent registered."""

    def __init__(self, file: str, nodes: list[str], env: dict[str, str]) -> None:
        self.file = file
        ports = free_ports(len(nodes))
        self.addresses = {n: f"tcp://127.0.0.1:{p}" for n, p in zip(nodes, ports, strict=True)}
        self.env = env
        self.procs: dict[str, NodeProcess] = {}

    @property
    def head(self) -> str:
        return next(iter(self.addresses.values()))

    def start(self, agents: set[str]) -> Self:
        first, *others = self.addresses
        self._start(first).wait_ready(30)
        for name in others:
            self._start(name)
        for name in others:
            self.procs[name].wait_ready(30)
        for name, proc in self.procs.items():
            ready = {"event": "node.ready", "name": name, "address": self.addresses[name]}
            assert proc.ready == {**ready, "registered": True}, proc.ready
        assert {p.pid for p in node_processes(self.env["MACP_DATA_DIR"])} == {
            p.proc.pid for p in self.procs.values() if p.proc is not None
        }
        with macp.connect(self.head) as cluster:
            wait_until(
                lambda: (
                    agents <= {r["address"] for r in cluster.agents() if r["status"] == "available"}
                ),
                30,
                f"agents not all registered: {sorted(agents)}",
            )
        return self

    def _start(self, name: str) -> NodeProcess:
        args = [arg for node, address in self.addresses.items()
                for arg in ("--address", f"{node}={address}")]  # fmt: skip
        proc = NodeProcess(
            name, *args, "--log-level", "warning", config=self.file, environ=self.env, cwd=ROOT
        )
        self.procs[name] = proc
        return proc.launch()

    @property
    def stderr(self) -> dict[str, list[str]]:
        return {name: proc.stderr for name, proc in self.procs.items()}

    def terminate(self) -> dict[str, int]:
        """SIGTERM every node (the head last); each exit code, once none wrote to its standard
        error anything but log records."""
        codes = {name: proc.terminate(20) for name, proc in reversed(self.procs.items())}
        assert {name: unlogged(lines) for name, lines in self.stderr.items()} == {
            name: [] for name in self.stderr
        }
        return dict(sorted(codes.items()))

    def stop(self) -> None:
        """SIGTERM every node still running (the head last), SIGKILL any that does not stop."""
        for proc in reversed(self.procs.values()):
            if proc.running():
                try:
                    proc.terminate(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.kill()  # reaps, and ends its readers

    def kill(self) -> None:
        """SIGKILL every node still running."""
        for proc in self.procs.values():
            proc.kill()
