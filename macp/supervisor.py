"""Supervisors: Erlang/OTP restart strategies for Pykka actors.

A :class:`Supervisor` starts its children in order, watches them, and when one exits restarts
what its strategy says:

- ``one_for_one``: only the child that exited;
- ``one_for_all``: every child (the others are stopped first, in reverse start order);
- ``rest_for_one``: the child that exited and every child started after it.

Whether an exit is restarted depends on the child's ``restart``: ``permanent`` always,
``transient`` only after a crash, ``temporary`` never. More than ``max_restarts`` restarts
within ``within_s`` seconds means the supervisor gives up: it stops its children and exits with
:class:`SupervisorEscalation`, which its own parent handles as the crash of one child. The root
supervisor of a node that gives up ends the node with exit code 1.

A restarted child keeps its name (so its address stays valid) and starts with fresh state.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

import pykka

from macp._supervised import ChildExited, Supervised
from macp.address import check_name
from macp.errors import ConfigError, StartFailed, SupervisorEscalation

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from macp._inbox import PriorityInbox
    from macp.node import Node

__all__ = ["ChildSpec", "Restart", "Strategy", "Supervisor", "SupervisorSpec"]


_FOREVER_S = 3600.0


class Restart(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts, and restarts, one actor.

    Attributes:
        actor: the actor class (an :class:`~macp.Agent` subclass).
        name: the child's name, unique on its node; kept across restarts.
        args: positional arguments for the constructor.
        kwargs: keyword arguments for the constructor (an agent's ``config`` goes here).
        restart: ``permanent``, ``transient`` or ``temporary``.
        shutdown_s: how long the child gets to stop; ``None`` uses the node's setting.
    """

    actor: type[Supervised]
    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown_s: float | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "child")
        if not (isinstance(self.actor, type) and issubclass(self.actor, Supervised)):
            raise ConfigError(
                f"child {self.name!r}: actor must be an Agent subclass, not {self.actor!r}"
            )
        object.__setattr__(self, "restart", Restart(self.restart))


@dataclass(frozen=True)
class SupervisorSpec:
    """A nested supervisor and its children, started in the order given."""

    name: str
    children: Sequence[ChildSpec | SupervisorSpec] = ()
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within_s: float = 5.0
    restart: Restart = Restart.PERMANENT
    shutdown_s: float | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "supervisor")
        try:
            object.__setattr__(self, "strategy", Strategy(self.strategy))
            object.__setattr__(self, "restart", Restart(self.restart))
        except ValueError as e:
            raise ConfigError(
                f"supervisor {self.name!r}: {e}; strategy is one of "
                f"{', '.join(Strategy)} and restart one of {', '.join(Restart)}"
            ) from e
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ConfigError(f"supervisor {self.name!r}: max_restarts must be an integer >= 0")
        if not isinstance(self.within_s, int | float) or self.within_s <= 0:
            raise ConfigError(f"supervisor {self.name!r}: within_s must be a positive number")
        names = [c.name for c in self.children]
        if len(names) != len(set(names)):
            raise ConfigError(f"supervisor {self.name!r}: child names must be unique: {names}")


class StartChild(NamedTuple):
    spec: ChildSpec | SupervisorSpec


class TerminateChild(NamedTuple):
    name: str


class WhichChildren(NamedTuple):
    pass


class _Tick(NamedTuple):
    pass


class _Child:
    __slots__ = ("actor", "inbox", "restarts", "spec")

    def __init__(self, spec: ChildSpec | SupervisorSpec) -> None:
        self.spec = spec
        self.actor: Supervised | None = None
        self.inbox: PriorityInbox | None = None  # an agent's mailbox, kept across restarts
        self.restarts = 0


class Supervisor(Supervised):
    """A supervisor actor; build it through :class:`SupervisorSpec` and ``Node.start_child``."""

    def __init__(self, spec: SupervisorSpec) -> None:
        super().__init__()
        self.spec = spec
        self._children: list[_Child] = [_Child(c) for c in spec.children]
        self._by_name = {c.spec.name: c for c in self._children}
        self._restarts: deque[float] = deque()
        self._timer: Any = None

    def on_start(self) -> None:
        for child in self._children:
            failure = self._start_child(child)
            if failure is not None:  # as OTP: a supervisor whose child cannot start fails too
                self._stop_children(self._children, close=True)
                raise failure
        interval = self.node.settings.supervisor_check_interval_s
        self._timer = self.node.scheduler.call_every(interval, self._tell_tick)

    def _tell_tick(self) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(_Tick())

    def on_stop(self) -> None:
        self._stop_children(self._children, close=True)

    def on_failure(self, *_exc_info: object) -> None:
        self._stop_children(self._children, close=True)

    def _on_exit(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            return self._on_child_exit(message)
        if isinstance(message, _Tick):
            return self._watch()
        if isinstance(message, StartChild):
            return self._add(message.spec)
        if isinstance(message, TerminateChild):
            return self._terminate(message.name)
        if isinstance(message, WhichChildren):
            return self._which()
        return super()._handle_receive(message)

    # -- starting and stopping children --------------------------------------------------------

    def _start_child(self, child: _Child) -> StartFailed | None:
        """Start ``child``'s actor and wait for its ``on_start``; why it failed, if it did."""
        spec = child.spec
        if isinstance(spec, SupervisorSpec):
            actor: Supervised = Supervisor(spec)
            wait_s = _FOREVER_S
        else:
            actor = spec.actor(*spec.args, **spec.kwargs)
            wait_s = spec.shutdown_s or self.node.settings.shutdown_timeout_s
        actor._bind(spec.name, self.node, self.actor_ref, child.inbox)
        if child.inbox is None:
            self.node._register(spec.name, actor)
            if not isinstance(actor, Supervisor):
                child.inbox = actor.inbox
        child.actor = actor
        actor._start_actor_loop()
        if actor._wait_started(wait_s):
            return None
        self.log.warning("child.start_failed", child=spec.name)
        # A restart that fails counts as a crash (its exit report arrives as ChildExited); a
        # first start that fails is the caller's to handle.
        reason = actor._exit_reason
        if isinstance(reason, StartFailed):
            return reason  # a supervisor whose own child failed: that child is the news
        if reason is None:
            return StartFailed(f"child {spec.name!r} did not finish starting within {wait_s:g} s")
        return StartFailed(
            f"child {spec.name!r} failed to start: {type(reason).__name__}: {reason}"
        )

    def _stop_child(self, child: _Child, *, close: bool) -> None:
        """Stop the child's actor; with ``close``, its name goes too (its mailbox refused)."""
        actor, child.actor = child.actor, None
        if actor is not None and actor.actor_ref.is_alive():
            timeout_s = child.spec.shutdown_s or self.node.settings.shutdown_timeout_s
            if isinstance(child.spec, SupervisorSpec) and child.spec.shutdown_s is None:
                timeout_s = _FOREVER_S  # a supervisor waits for its children's own timeouts
            try:
                actor.actor_ref.stop(block=True, timeout=timeout_s)
            except pykka.Timeout:  # Python threads cannot be killed: it is abandoned
                self.log.warning("child.stop_timed_out", child=child.spec.name, timeout_s=timeout_s)
        if close:
            inbox, child.inbox = child.inbox, None
            if inbox is not None:
                self.node._close_mailbox(child.spec.name, inbox)

    def _stop_children(self, children: Sequence[_Child], *, close: bool) -> None:
        for child in reversed(children):
            self._stop_child(child, close=close)

    def _add(self, spec: ChildSpec | SupervisorSpec) -> Supervised:
        if spec.name in self._by_name:
            raise ConfigError(f"supervisor {self.name!r} already has a child named {spec.name!r}")
        child = _Child(spec)
        failure = self._start_child(child)
        if failure is not None:
            self._stop_child(child, close=True)  # its name goes: nothing was added
            raise failure
        self._children.append(child)
        self._by_name[spec.name] = child
        assert child.actor is not None
        return child.actor

    def _terminate(self, name: str) -> bool:
        child = self._by_name.pop(name, None)
        if child is None:
            return False
        self._stop_child(child, close=True)
        self._children.remove(child)
        return True

    def _which(self) -> list[dict[str, object]]:
        return [
            {
                "name": c.spec.name,
                "alive": c.actor is not None and c.actor.actor_ref.is_alive(),
                "restarts": c.restarts,
                "supervisor": isinstance(c.spec, SupervisorSpec),
            }
            for c in self._children
        ]

    # -- reacting to exits --------------------------------------------------------------------

    def _watch(self) -> None:
        for child in list(self._children):
            actor = child.actor
            if actor is not None and actor._thread_ended():
                self.log.warning("child.thread_died", child=child.spec.name)
                self._on_child_exit(
                    ChildExited(child.spec.name, actor.actor_urn, RuntimeError("thread died"))
                )

    def _on_child_exit(self, exit: ChildExited) -> None:
        child = self._by_name.get(exit.name)
        if child is None or child.actor is None or child.actor.actor_urn != exit.urn:
            return  # an incarnation we stopped ourselves, or already replaced
        child.actor = None
        crashed = exit.reason is not None
        restart = child.spec.restart
        self.log.info("child.exited", child=exit.name, reason=repr(exit.reason))
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and not crashed):
            self._stop_child(child, close=True)
            self._children.remove(child)
            del self._by_name[child.spec.name]
            return
        self._count_restart(exit)
        index = self._children.index(child)
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            affected = [child]
        elif strategy is Strategy.ONE_FOR_ALL:
            affected = list(self._children)
        else:
            affected = self._children[index:]
        self._stop_children(affected, close=False)
        for c in affected:
            c.restarts += 1
            self.log.info("child.restarting", child=c.spec.name, strategy=strategy.value)
            self._start_child(c)

    def _count_restart(self, exit: ChildExited) -> None:
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] < now - self.spec.within_s:
            self._restarts.popleft()
        if len(self._restarts) > self.spec.max_restarts:
            msg = (
                f"supervisor {self.name!r} gave up: more than {self.spec.max_restarts} restarts "
                f"within {self.spec.within_s:g} s; last, child {exit.name!r}: {exit.reason!r}"
            )
            raise SupervisorEscalation(msg) from exit.reason


def node_supervisor(node: Node, spec: SupervisorSpec) -> pykka.ActorRef[Supervisor]:
    """Start the root supervisor of ``node`` (it reports its exit to the node itself)."""
    root = Supervisor(spec)
    root._bind(spec.name, node, None)
    root._start_actor_loop()
    if not root._wait_started(_FOREVER_S):
        reason = root._exit_reason
        raise reason if isinstance(reason, StartFailed) else StartFailed(f"{reason!r}")
    return root.actor_ref
