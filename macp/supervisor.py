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

A child stuck in a handler is *abandoned* (Python cannot kill a thread): on its watch tick, a
supervisor that finds an agent still handling a message more than ``abandon_grace_s`` past the
message's deadline (for a coordinator's task, past the task's timeout) leaves that thread to
finish on its own, and handles it as the child's crash: a fresh incarnation takes the name and
the mailbox, and the restart counts toward the intensity (as OTP counts a killed child). A
message without a deadline (a tell) is never abandoned so; the ``restart`` control command
(:class:`RestartChild`, handed over by the node) is, and it restarts that child only, without
counting toward the intensity (as OTP's ``restart_child``, an operator's act, does not).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from macp._child_spec import ChildSpec, Restart, Strategy, SupervisorSpec
from macp._supervised import ChildExited, Supervised, incarnation_of
from macp.envelope import Envelope, now_ms
from macp.errors import ActorNotFound, ConfigError, MacpError, StartFailed, SupervisorEscalation

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pykka

    from macp._inbox import PriorityInbox
    from macp._supervised import InHand, Runtime
    from macp.envelope import Wire

__all__ = ["ChildSpec", "Restart", "RestartChild", "Strategy", "Supervisor", "SupervisorSpec"]


_FOREVER_S = 3600.0


class StartChild(NamedTuple):
    spec: ChildSpec | SupervisorSpec


class TerminateChild(NamedTuple):
    name: str


class WhichChildren(NamedTuple):
    pass


class RestartChild(NamedTuple):
    """Restart agent ``name`` now, and answer ``command`` (its ``restart`` control envelope)."""

    name: str
    command: Envelope


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
        if isinstance(message, StartChild):
            return self._add(message.spec)
        if isinstance(message, TerminateChild):
            return self._terminate(message.name)
        if isinstance(message, WhichChildren):
            return self._which()
        if isinstance(message, ChildExited):
            self._on_child_exit(message)
        elif isinstance(message, _Tick):
            self._watch()
        elif isinstance(message, RestartChild):
            self._restart_command(message)
        else:
            return super()._handle_receive(message)
        return None

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

    def _stop_child(
        self, child: _Child, *, close: bool, timeout_s: float | None = None, cause: str = "stop"
    ) -> bool:
        """Stop the child's actor; with ``close``, its name goes too (its mailbox refused).

        Returns ``False`` if the actor did not stop within its shutdown timeout (or
        ``timeout_s``, if shorter), and so was abandoned.
        """
        actor, child.actor = child.actor, None
        stopped = True
        if actor is not None:
            shutdown_s = self._shutdown_s(child)
            wait_s = shutdown_s if timeout_s is None else min(timeout_s, shutdown_s)
            if not actor._stop_within(wait_s):
                self._abandon_child(actor, cause, wait_s=wait_s)
                stopped = False
        if close:
            inbox, child.inbox = child.inbox, None
            if inbox is not None:
                self.node._close_mailbox(child.spec.name, inbox)
        return stopped

    def _shutdown_s(self, child: _Child) -> float:
        if isinstance(child.spec, SupervisorSpec) and child.spec.shutdown_s is None:
            return _FOREVER_S  # a supervisor waits for its children's own timeouts
        return child.spec.shutdown_s or self.node.settings.shutdown_timeout_s

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
        grace_s = self.node.settings.abandon_grace_s
        for child in list(self._children):
            actor = child.actor
            if actor is None:
                continue
            if actor._thread_ended():
                self.log.warning("child.thread_died", child=child.spec.name)
                self._on_child_exit(
                    ChildExited(child.spec.name, actor.actor_urn, RuntimeError("thread died"))
                )
                continue
            in_hand = actor._in_hand()
            if in_hand is None or in_hand.due_ms is None:
                continue
            over_s = (now_ms() - in_hand.due_ms) / 1000
            if over_s > grace_s:
                self._abandon_child(actor, "overdue", in_hand, over_s=over_s)
                reason = TimeoutError(
                    f"its {in_hand.type!r} handler ran {over_s:.1f} s past its deadline"
                )
                self._on_child_exit(ChildExited(child.spec.name, actor.actor_urn, reason))

    def _abandon_child(
        self,
        actor: Supervised,
        cause: str,
        in_hand: InHand | None = None,
        *,
        over_s: float | None = None,
        wait_s: float | None = None,
    ) -> None:
        """Leave ``actor``'s thread to finish on its own (Python cannot kill it); count it."""
        in_hand = in_hand or actor._in_hand()
        actor._abandon()
        self.node.counters["abandoned"] += 1
        actor.log.warning(
            "agent.abandoned",
            cause=cause,
            type=None if in_hand is None else in_hand.type,
            task_id=None if in_hand is None else in_hand.task_id,
            over_s=None if over_s is None else round(over_s, 3),
            waited_s=wait_s,
        )

    def _restart_command(self, message: RestartChild) -> None:
        """The ``restart`` control command: a fresh incarnation of one agent, answered once
        the registry has it. Only that child, whatever the strategy; not counted toward the
        intensity (an operator's restart is no crash)."""
        env = message.command
        child = self._by_name.get(message.name)
        old = None if child is None else child.actor
        if child is None or old is None or isinstance(child.spec, SupervisorSpec):
            gone = ActorNotFound(f"no actor named {message.name!r} on node {self.node.name!r}")
            self._send(env.error(gone, env.dst))
            return
        # A clean stop gets its shutdown timeout, but at most half the command's time left:
        # the answer must reach an asker still waiting for it.
        wait_s = None if env.deadline is None else max(0.0, (env.deadline - now_ms()) / 2000)
        stopped = self._stop_child(child, close=False, timeout_s=wait_s, cause="restart")
        child.restarts += 1
        self.log.info("child.restarting", child=child.spec.name, cause="restart command")
        failure = self._start_child(child)  # a start that fails reports an exit: a crash
        if failure is not None:
            self._send(env.error(failure, env.dst))
            return
        assert child.actor is not None
        result: Wire = {
            "incarnation": incarnation_of(child.actor),
            "previous": incarnation_of(old),
            "abandoned": not stopped,
        }
        answer = env.reply(result, env.dst)
        changed = self.node._agent_changed(env.dst)
        if changed is None:
            self._send(answer)
        else:  # answered once the registry (and so routing) has the new incarnation
            changed.add_done_callback(lambda _: self._send(answer))

    def _send(self, answer: Envelope) -> None:
        try:
            self.node.send(answer)
        except MacpError as e:
            self.log.warning("reply.undeliverable", msg_id=answer.corr, error=str(e))

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


def node_supervisor(node: Runtime, spec: SupervisorSpec) -> pykka.ActorRef[Supervisor]:
    """Start the root supervisor of ``node`` (it reports its exit to the node itself)."""
    root = Supervisor(spec)
    root._bind(spec.name, node, None)
    root._start_actor_loop()
    if not root._wait_started(_FOREVER_S):
        reason = root._exit_reason
        raise reason if isinstance(reason, StartFailed) else StartFailed(f"{reason!r}")
    return root.actor_ref
