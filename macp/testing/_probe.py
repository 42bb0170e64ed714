"""Probes: what a test hands an agent at spawn time to watch it and to hold it at a point."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Self

from macp.actors.agent import Agent
from macp.errors import AskTimeout, ConfigError
from macp.testing._waits import Recorder

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from macp.envelope import Wire

__all__ = ["Probe", "ProbedAgent"]


class Probe(Recorder):
    """A :class:`Recorder` plus named gates, handed to an agent when it is spawned.

    The agent records what it sees (:meth:`record`) and waits at a gate (:meth:`wait_open`)
    until the test opens it (:meth:`open`); the test waits on the records with deadlines
    (:meth:`wait_for`, :meth:`wait_count`) and asserts on :attr:`events`. Pass it as a keyword
    argument of :meth:`Node.spawn <macp.Node.spawn>` (``node.spawn(MyAgent, "a", probe=probe)``,
    the agent subclassing :class:`ProbedAgent`): the child spec keeps it, so every incarnation
    a supervisor restarts gets the same probe, and a test can count the restarts.

    A probe is an object of this process: it cannot cross nodes (nor be written in a topology
    file). Agents in node processes are watched through the cluster API (``Cluster.status``,
    ``Cluster.agents``) or the processes' log lines (:class:`NodeProcess`).

    Used as a context manager (or through a fixture), it opens every gate on exit, so no agent
    is left blocked in a handler when its node stops.
    """

    def __init__(self) -> None:
        super().__init__()
        self._gates: dict[str, threading.Event] = {}
        self._gates_lock = threading.Lock()

    def gate(self, name: str = "gate") -> threading.Event:
        """The gate ``name`` (closed when first asked for)."""
        with self._gates_lock:
            return self._gates.setdefault(name, threading.Event())

    def open(self, name: str = "gate") -> None:
        """Open gate ``name``: whoever waits at it goes on, and so will whoever comes later."""
        self.gate(name).set()

    def close(self, name: str = "gate") -> None:
        """Close gate ``name`` again: agents arriving at it from now on wait."""
        self.gate(name).clear()

    def is_open(self, name: str = "gate") -> bool:
        return self.gate(name).is_set()

    def wait_open(self, name: str = "gate", timeout_s: float = 10.0) -> None:
        """Wait (in an agent's handler, say) until the test opens gate ``name``.

        Raises:
            AskTimeout: it was not opened within ``timeout_s``.
        """
        if not self.gate(name).wait(timeout_s):
            raise AskTimeout(f"gate {name!r} of the probe was not opened within {timeout_s:g} s")

    def open_all(self) -> None:
        """Open every gate (at the end of a test: no handler is left waiting)."""
        with self._gates_lock:
            gates = list(self._gates.values())
        for gate in gates:
            gate.set()

    def count(self, event: Any) -> int:
        """How many of the records so far equal ``event``."""
        return sum(1 for recorded in list(self.events) if recorded == event)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.open_all()


class ProbedAgent(Agent):
    """An agent that takes a :class:`Probe` as the keyword argument ``probe`` (required) and
    keeps it as :attr:`probe`; subclass it (alone, or before your own agent class) in a test::

        class Watched(ProbedAgent, Summarizer):
            def on_start(self) -> None:
                self.probe.record(("started", self.name))

        node.spawn(Watched, "summarizer", probe=probe)
    """

    def __init__(
        self, config: Mapping[str, Wire] | None = None, *, probe: Probe | None = None, **kwargs: Any
    ) -> None:
        if not isinstance(probe, Probe):
            given = "none" if probe is None else type(probe).__name__
            raise ConfigError(
                f"{type(self).__name__} takes a macp.testing.Probe as probe=, not {given}; "
                f"spawn it with node.spawn({type(self).__name__}, name, probe=Probe())"
            )
        super().__init__(config, **kwargs)
        self.probe = probe
