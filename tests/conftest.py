"""Shared fixtures: every test runs with the strict setting, and leaves no macp thread behind."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zmq

os.environ["MACP_STRICT"] = "1"
sys.path.insert(0, str(Path(__file__).parent))  # tests/agents.py and tests/procs.py

from procs import TESTS
from topology_procs import EXAMPLE_PORTS, ROOT, node_processes

from macp import Node, Settings, SupervisorSpec
from macp.store import Journal
from macp.testing import LocalCluster, NodeProcess, Probe, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

FAST = Settings(strict=True, supervisor_check_interval_s=0.05, ask_timeout_s=5.0)


def _macp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("macp-") and t.is_alive()]


@pytest.fixture(autouse=True)
def _own_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's nodes (in this process or started by it) keep their default journals in a
    folder of the test's own, never in one another's (``.macp/`` of the working directory)."""
    monkeypatch.setenv("MACP_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    yield
    wait_until(lambda: not _macp_threads(), 5.0, "macp threads left running")


@pytest.fixture
def make_node() -> Iterator[Callable[..., Node]]:
    """Build and start nodes; every one is stopped when the test ends."""
    nodes: list[Node] = []

    def make(
        name: str = "test",
        *,
        settings: Settings = FAST,
        supervision: SupervisorSpec | None = None,
        **transport: Any,
    ) -> Node:
        node = Node(name, settings=settings, supervision=supervision, **transport).start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def node(make_node: Callable[..., Node]) -> Node:
    return make_node()


@pytest.fixture
def procs() -> Iterator[Callable[..., NodeProcess]]:
    """Start ``macp node start`` processes; every one is killed when the test ends."""
    started: list[NodeProcess] = []

    def start(
        name: str,
        *args: str,
        listen: str = "tcp://127.0.0.1:0",
        env: dict[str, str] | None = None,
    ) -> NodeProcess:
        proc = NodeProcess(name, *args, listen=listen, env=env, pythonpath=[TESTS]).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    """Where the test's journal lives (a head's, or a control-plane actor's)."""
    return tmp_path / "journal.sqlite3"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[Journal]:
    """A journal open on ``journal_path``."""
    with Journal(journal_path) as opened:
        yield opened


@pytest.fixture
def local_cluster(journal_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    """Start local clusters (``LocalCluster(nodes, **options)``: node processes import
    tests/agents.py as ``agents``, the head journals at ``journal_path`` unless given
    ``journal=``); every one is stopped when the test ends (its processes killed and reaped)."""
    started: list[LocalCluster] = []

    def start(nodes: Any = None, **options: Any) -> LocalCluster:
        options = {"pythonpath": [TESTS], "journal": journal_path, **options}
        local = LocalCluster(nodes, **options)
        started.append(local)
        return local.start()

    yield start
    for local in reversed(started):
        local.stop()


@pytest.fixture
def probe(
    make_node: Callable[..., Node], local_cluster: Callable[..., LocalCluster]
) -> Iterator[Probe]:
    """A probe for the test's agents; every gate is opened when the test ends, before any node
    of ``make_node`` or ``local_cluster`` stops (it is set up after them), so no handler is
    left waiting."""
    with Probe() as made:
        yield made


@pytest.fixture
def zmq_socket() -> Iterator[Callable[[int], zmq.Socket[bytes]]]:
    """Make raw ZeroMQ sockets of a kind (real pyzmq, no macp; linger 0); all closed, and their
    context ended, when the test ends (sockets made from them, a monitor's, too)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made: list[zmq.Socket[bytes]] = []  # held here: a socket collected unclosed would warn

    def make(kind: int) -> zmq.Socket[bytes]:
        sock = context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close(0)
    context.destroy(linger=0)  # the sockets made from them (a monitor's) too, then the end


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a test's `macp` processes: the examples' own ports (0: free ones), a
    journal directory of its own, tests/agents.py importable as ``agents``. Any node process of
    the test still running is killed."""
    clean = {k: v for k, v in os.environ.items() if not EXAMPLE_PORTS.match(k)}
    data_dir = str(tmp_path / "data")
    path = os.pathsep.join(p for p in [str(ROOT / "tests"), os.environ.get("PYTHONPATH")] if p)
    yield {**clean, "MACP_DATA_DIR": data_dir, "PYTHONPATH": path}
    for proc in node_processes(data_dir):
        proc.kill()
