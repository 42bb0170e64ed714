"""A cluster on this host for tests: a head plus nodes, in this process or as node processes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from macp._loader import load_class
from macp.cluster import Cluster, connect
from macp.control_plane import start_control_plane
from macp.errors import ConfigError, MacpError
from macp.node import Node
from macp.settings import Settings
from macp.testing._process import NodeProcess, settings_flags
from macp.testing._waits import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from types import TracebackType

    from macp._supervised import Supervised
    from macp.runtime import Ref

__all__ = ["LocalCluster", "cluster_fixture"]

_LOCAL = "tcp://127.0.0.1:0"


def _quick() -> Settings:
    # Liveness fast enough for tests (a peer is down in about 0.6 s), slack enough for a
    # loaded machine; the strict setting from MACP_STRICT, as by default.
    return Settings(
        heartbeat_interval_s=0.1, acceptable_pause_s=0.3, supervisor_check_interval_s=0.05
    )


def _import_path(agent: type[Supervised] | str) -> str:
    return agent if isinstance(agent, str) else f"{agent.__module__}:{agent.__qualname__}"


class LocalCluster:
    """A head (with the control plane) plus nodes on 127.0.0.1, started for a test and stopped
    after it: in this process (:class:`~macp.Node` objects, each listening on a free port) or,
    with ``processes=True``, as ``macp node start`` processes (killed and reaped at the end).
    :meth:`start` returns once every node is up at the head and every agent is routable;
    :attr:`cluster` is then a connected :class:`~macp.Cluster`.

    Args:
        nodes: the nodes besides the head, each with its agents (``name -> class``; for node
            processes the class's import path is passed, so its module must be importable
            there: see ``pythonpath``).
        head: the agents on the head.
        processes: run every node, the head included, as a node process.
        settings: every node's settings (default: heartbeats every 0.1 s, a peer down after
            0.6 s of silence; strict as ``MACP_STRICT`` says). Node processes get their
            liveness and message limit as flags.
        journal: the head's journal (default: a file in a temporary directory, removed at
            the end; a restarted head finds it).
        pools: the resource pools of the head's resource manager (nodes in this process).
        head_name: the head's name.
        pythonpath: directories node processes import agent classes from.
        env: more environment variables for node processes.
        timeout_s: how long starting waits for the nodes and agents.

    Example::

        with LocalCluster({"w1": {"echo": Echo}}) as local:
            assert local.cluster.submit("echo", {"x": 1}, agent="echo@w1").result() == ...
    """

    def __init__(
        self,
        nodes: Mapping[str, Mapping[str, type[Supervised] | str]] | None = None,
        *,
        head: Mapping[str, type[Supervised] | str] | None = None,
        processes: bool = False,
        settings: Settings | None = None,
        journal: str | os.PathLike[str] | None = None,
        pools: Mapping[str, float] | None = None,
        head_name: str = "head",
        pythonpath: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.head = head_name
        self.processes = processes
        self.settings = settings or _quick()
        self.pools = dict(pools or {})
        self.pythonpath = [os.fspath(p) for p in pythonpath]
        self.env = dict(env or {})
        self.timeout_s = timeout_s
        self._agents: dict[str, dict[str, type[Supervised] | str]] = {head_name: dict(head or {})}
        for name, agents in (nodes or {}).items():
            if name == head_name:
                raise ConfigError(f"node {name!r} is the head: give its agents as head=")
            self._agents[name] = dict(agents)
        if processes and self.pools:
            raise ConfigError("pools= needs nodes in this process; leave processes=False")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.journal = None if journal is None else Path(journal)
        self._spawned: dict[tuple[str, str], dict[str, Any]] = {}  # spawn()'s keyword arguments
        self._nodes: dict[str, Node] = {}
        self._procs: dict[str, NodeProcess] = {}
        self._addresses: dict[str, str] = {}
        self._cluster: Cluster | None = None

    # -- what a test reads ----------------------------------------------------------------------

    @property
    def cluster(self) -> Cluster:
        """The control plane, through the head (in this process) or a client connected to it."""
        if self._cluster is None:
            raise ConfigError("the local cluster is not started: call start() or use `with`")
        return self._cluster

    @property
    def names(self) -> list[str]:
        """The nodes, the head first."""
        return list(self._agents)

    def address(self, name: str) -> str:
        """The address node ``name`` listens on (it keeps it across restarts)."""
        return self._addresses[self._known(name)]

    def agents(self, name: str | None = None) -> list[str]:
        """The addresses (``agent@node``) of the agents of node ``name`` (of all nodes)."""
        names = self.names if name is None else [self._known(name)]
        return [f"{agent}@{node}" for node in names for agent in self._agents[node]]

    def node(self, name: str) -> Node:
        """Node ``name`` (nodes in this process)."""
        if self.processes:
            raise ConfigError(f"node {name!r} is a process: use process({name!r})")
        return self._nodes[self._known(name)]

    def process(self, name: str) -> NodeProcess:
        """Node process ``name`` (with ``processes=True``): its logs, its exit code."""
        if not self.processes:
            raise ConfigError(f"node {name!r} runs in this process: use node({name!r})")
        return self._procs[self._known(name)]

    def _known(self, name: str) -> str:
        if name not in self._agents:
            raise ConfigError(f"no node {name!r} in the local cluster; it has {self.names}")
        return name

    # -- lifetime -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the head, then the other nodes; return once all are up at the head and
        every agent is routable (or stop what started and raise)."""
        if self.journal is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="macp-cluster-")
            self.journal = Path(self._tmp.name) / "journal.sqlite3"
        try:
            for name in self.names:
                self._start_node(name)
            self._cluster = (
                connect(self.address(self.head), timeout_s=self.timeout_s)
                if self.processes
                else Cluster(self._nodes[self.head], timeout_s=self.timeout_s)
            )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until every node (but a node process killed and not restarted) is up at the
        head, and every agent of those nodes is routable.

        Raises:
            AskTimeout: some are not within ``timeout_s`` (named).
        """
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        live = [n for n in self.names if not self.processes or self._procs[n].running()]
        others = set(live) - {self.head}

        def down() -> set[str]:
            try:
                peers = self.cluster.node.ask_node(self.head, "node.info").get()["peers"]
            except MacpError:  # the head is (re)starting: ask again
                return others
            return {n for n in others if peers.get(n, {}).get("state") != "up"}

        wait_until(lambda: not down(), timeout_s, f"nodes not up at the head: {sorted(down())}")
        self.cluster.wait_for_agents([a for n in live for a in self.agents(n)], timeout_s)

    def spawn(self, node: str, actor: type[Supervised], name: str, **kwargs: Any) -> Ref:
        """Start agent ``name`` on node ``node`` (in this process; ``kwargs`` go to
        :meth:`Node.spawn <macp.Node.spawn>`, a :class:`Probe` among them) and wait until it
        is routable; its ref."""
        ref = self.node(node).spawn(actor, name, **kwargs)
        self._agents[node][name] = actor
        self._spawned[node, name] = kwargs  # for a restart of the node
        self.cluster.wait_for_agents([f"{name}@{node}"], self.timeout_s)
        return ref

    def kill(self, name: str) -> None:
        """SIGKILL node process ``name`` (``kill -9``) and reap it."""
        self.process(name).kill()

    def restart(self, name: str) -> None:
        """Start node ``name`` again on its address (a process still running is killed first,
        a node in this process is stopped), with its agents (those of :meth:`spawn` with the
        same arguments, a probe included); return once it is up again."""
        if self.processes:
            self.process(name).kill()
        else:
            self.node(name).stop()
        self._start_node(name)
        if not self.processes and name == self.head:  # the control plane's new node
            self._cluster = Cluster(self._nodes[name], timeout_s=self.timeout_s)
        self.wait_ready()

    def stop(self) -> None:
        """Close the client, stop the nodes (the head last) or kill and reap the processes."""
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        for proc in reversed(self._procs.values()):
            proc.kill()
        for node in reversed(self._nodes.values()):
            node.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.journal = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- starting one node ----------------------------------------------------------------------

    def _start_node(self, name: str) -> None:
        listen = self._addresses.get(name, _LOCAL)
        if self.processes:
            self._start_process(name, listen)
        else:
            self._start_here(name, listen)

    def _start_here(self, name: str, listen: str) -> None:
        if name == self.head:
            node = Node(name, listen=listen, settings=self.settings).start()
            self._nodes[name] = node
            start_control_plane(node, journal=self.journal, pools=self.pools)
        else:
            head = {self.head: self.address(self.head)}
            node = Node(name, listen=listen, head=self.head, peers=head, settings=self.settings)
            self._nodes[name] = node.start()
        assert node.address is not None
        self._addresses[name] = node.address
        for agent, cls in self._agents[name].items():
            actor = load_class(cls, f"agent {agent}") if isinstance(cls, str) else cls
            node.spawn(actor, agent, **self._spawned.get((name, agent), {}))

    def _start_process(self, name: str, listen: str) -> None:
        args = list(settings_flags(self.settings))
        if name == self.head:
            args += ["--control-plane", "--journal", str(self.journal)]
        else:
            args += ["--head", self.head, "--peer", f"{self.head}={self.address(self.head)}"]
        for agent, cls in self._agents[name].items():
            args += ["--agent", f"{agent}={_import_path(cls)}"]
        proc = NodeProcess(name, *args, listen=listen, env=self.env, pythonpath=self.pythonpath)
        self._procs[name] = proc
        proc.start(self.timeout_s)
        assert proc.address is not None
        self._addresses[name] = proc.address


def cluster_fixture(
    nodes: Mapping[str, Mapping[str, type[Supervised] | str]] | None = None,
    *,
    scope: str = "function",
    **options: Any,
) -> Callable[[], Iterator[LocalCluster]]:
    """A pytest fixture starting ``LocalCluster(nodes, **options)`` for each test (or each
    ``scope``) and stopping it after; assign it to the fixture's name in a test module or a
    ``conftest.py``::

        local = cluster_fixture({"w1": {"echo": Echo}}, processes=True)

        def test_echo(local: LocalCluster) -> None: ...

    pytest is imported only when this is called.
    """
    import pytest  # noqa: PLC0415 - macp does not need pytest; only this function does

    def fixture() -> Iterator[LocalCluster]:
        with LocalCluster(nodes, **options) as local:
            yield local

    made: Callable[[], Iterator[LocalCluster]] = pytest.fixture(scope=scope)(fixture)  # type: ignore[call-overload]
    return made
