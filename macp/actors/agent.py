"""The Agent base class: handlers, messaging, lifecycle and control commands.

Write an agent by subclassing :class:`Agent` and marking methods with :func:`handler`::

    class Summarizer(Agent):
        capabilities = ("summarize",)

        @handler("summarize")
        def summarize(self, body: dict, ctx: Context) -> dict:
            return {"summary": body["text"][:200]}

A handler takes the message body (and, if it declares a second parameter, a :class:`Context`);
what it returns is the reply to an ``ask``. A handler that raises answers the asker with an
``error`` envelope and the agent lives on, unless the class sets ``crash_on_error = True``
(Erlang's "let it crash"): then the agent dies and its supervisor restarts it with fresh state.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

from macp._supervised import InHand, Supervised, incarnation_of
from macp.actors.context import Context, Deferred, Running, set_running
from macp.actors.control import Controls
from macp.actors.handlers import TASK_ACK, TASK_RUN, Handler, handler, handler_table, mark
from macp.commands import AgentState
from macp.envelope import Envelope, Kind, Priority, Wire, now_ms
from macp.errors import (
    ConfigError,
    DeadlockError,
    InvalidParams,
    MacpError,
    ResourceUnavailable,
    UnknownMessageType,
    plain_error_body,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from macp._inbox import PriorityInbox
    from macp._supervised import Runtime
    from macp.futures import AskFuture
    from macp.runtime import NodeRuntime

__all__ = ["TASK_ACK", "TASK_RUN", "Agent", "handler"]

_MEDIUM = int(Priority.MEDIUM)
_CONTROL = Kind.CONTROL
_ANSWERED = frozenset({Kind.ASK, Kind.CONTROL})
_RUNNING = AgentState.RUNNING


class Agent(Controls, Supervised):
    """Base class of every agent: a supervised Pykka actor that speaks envelopes.

    Class attributes:
        capabilities: what the agent can do; the registry finds agents by them.
        role: a free-form role name (``"worker"``, ``"lead"``, ...).
        model_type, model_version: the model the agent runs on (e.g. ``"llm"``, ``"2"``): its
            registry record's fields, filters of ``find_agents``, and the model its
            ``ctx.report`` figures count for (``type@version``).
        crash_on_error: die on a handler error, to be restarted fresh by the supervisor.

    Threading: ``__init__`` runs in the creator's thread, before the agent has a name or a node;
    ``on_start``, handlers, ``on_configure``, ``on_reset`` and ``on_stop`` run in the agent's
    own thread, where ``self.name``, ``self.address``, ``self.node`` and ``self.config`` are set.
    """

    capabilities: ClassVar[tuple[str, ...]] = ()
    role: ClassVar[str | None] = None
    group: ClassVar[str | None] = None
    model: ClassVar[dict[str, Wire] | None] = None
    model_type: ClassVar[str | None] = None
    model_version: ClassVar[str | None] = None
    crash_on_error: ClassVar[bool] = False
    _handlers: ClassVar[dict[str, Handler]] = {}
    _has_idle_hook: ClassVar[bool] = False
    node: NodeRuntime  # the Node it runs on, seen through the protocol (never imported here)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = handler_table(cls)
        cls._has_idle_hook = cls.on_idle is not Agent.on_idle

    def __init__(
        self,
        config: Mapping[str, Wire] | None = None,
        *,
        capabilities: Sequence[str] | None = None,
        role: str | None = None,
        group: str | None = None,
        model_type: str | None = None,
        model_version: str | None = None,
    ) -> None:
        """Args: ``config`` for the agent's own use; ``capabilities``, ``role``, ``group``,
        ``model_type`` and ``model_version`` override the class's for this instance (a
        topology file sets them per agent)."""
        super().__init__()
        self.config: dict[str, Any] = dict(config or {})
        if capabilities is not None:
            if isinstance(capabilities, str) or not all(isinstance(c, str) for c in capabilities):
                raise ConfigError(
                    f"capabilities must be a list of strings, not {capabilities!r}; "
                    "e.g. ['summarize']"
                )
            self.capabilities = tuple(capabilities)  # type: ignore[misc]
        given = {"role": role, "group": group, "model_type": model_type,
                 "model_version": model_version}  # fmt: skip
        for field, value in given.items():
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{field} must be a string, not {value!r}")
            if value is not None:
                setattr(self, field, value)
        for field in ("model_type", "model_version"):  # the class's own, unless given
            declared = getattr(self, field)
            if declared is not None and not isinstance(declared, str):
                raise ConfigError(
                    f"{type(self).__name__}.{field} must be a string, not {declared!r}; "
                    f"e.g. {field} = {str(declared)!r}"
                )
        self.address = ""
        self.state = AgentState.STARTING
        self._current: Envelope | None = None
        self._held: deque[Envelope] = deque()
        self._init_controls()

    # -- messaging ----------------------------------------------------------------------------

    def tell(self, address: str, type: str, body: Wire = None, *, prio: int = _MEDIUM) -> None:
        """Send a one-way message: at-most-once, FIFO per sender/receiver pair."""
        dst = self.node.resolve(address)
        self.node.send(Envelope.new(Kind.TELL, type, self.address, dst, body, prio=prio))

    def ask(
        self,
        address: str,
        type: str,
        body: Wire = None,
        *,
        timeout_s: float | None = None,
        prio: int = _MEDIUM,
    ) -> AskFuture:
        """Send a request; ``.get()`` on the result waits for the reply (or raises its error).

        Raises:
            DeadlockError: at once, if the target is this agent or already waits on this call.
        """
        target = self.node.resolve(address)
        current = self._current
        chain = current.chain if current is not None and current.answered else ()
        if target == self.address or target in chain:
            raise DeadlockError(
                f"{self.address} asking {target} for {type!r} would deadlock: "
                f"{' -> '.join((*chain, self.address, target))}"
            )
        return self.node.ask(
            target,
            type,
            body,
            timeout_s=timeout_s,
            prio=prio,
            src=self.address,
            chain=(*chain, self.address),
        )

    def subscribe(self, *events: str) -> None:
        """Receive ``events`` (``node.up``, ``node.down``) as ``event`` envelopes, handled by the
        handlers of those types; the subscription outlives restarts (it is by address)."""
        self.node.subscribe(self.address, *events)

    def record(self) -> dict[str, Wire]:
        """What the registry knows about this agent."""
        return {
            "address": self.address,
            "name": self.name,
            "node": self.node.name,
            "role": self.role,
            "group": self.group,
            "capabilities": sorted(self.capabilities),
            "handles": sorted(t for t in self._handlers if t != TASK_RUN),
            "incarnation": incarnation_of(self),  # new after every restart
            "model": self.model,
            "model_type": self.model_type,
            "model_version": self.model_version,
            "metadata": {"class": f"{type(self).__module__}:{type(self).__qualname__}"},
        }

    def load(self) -> tuple[str, int]:
        """The registry status (``available``, ``busy``, ``paused``, ``offline``, ``error``) and
        the load (messages queued or in hand). Read from other threads: values may be a moment
        old."""
        if self.actor_stopped.is_set():
            return "error", 0
        load = self.inbox.depth() + (self._current is not None)
        state = self.state
        if state is AgentState.RUNNING:
            return ("busy" if load else "available"), load
        if state is AgentState.PAUSED:
            return "paused", load
        return ("offline" if state is AgentState.STOPPED else "error"), load

    def messages(self) -> int:
        """The messages this incarnation took (handled or failed; RESET zeroes the count): the
        counters the handlers keep anyway, read from the registrar's thread."""
        return self.handled + self.counters["failed"]

    # -- hooks --------------------------------------------------------------------------------

    def on_configure(self, params: dict[str, Wire]) -> None:
        """Called by CONFIGURE after ``params`` are merged into ``self.config``."""

    def on_reset(self) -> None:
        """Called by RESET: return the agent's own state to how it started."""

    def on_idle(self) -> None:
        """Called when the mailbox has just become empty (e.g. to commit a batch of writes)."""

    @mark(TASK_RUN)
    def _run_task(self, body: Wire, ctx: Context) -> Any:
        """Run a task the coordinator assigned: acknowledge it, then run its type's handler."""
        if not isinstance(body, dict):
            raise InvalidParams("task.run needs a map with the task's type and body")
        task_id, attempt, type_ = body.get("task_id"), body.get("attempt"), body.get("type")
        if (
            not isinstance(task_id, str)
            or not isinstance(attempt, int)
            or not isinstance(type_, str)
        ):
            raise InvalidParams("task.run needs a string task_id and type, and an integer attempt")
        self.tell(ctx.sender, TASK_ACK, {"task_id": task_id, "attempt": attempt})
        entry = self._handlers.get(type_)
        if entry is None or type_ == TASK_RUN:
            known = ", ".join(sorted(t for t in self._handlers if t != TASK_RUN)) or "none"
            raise UnknownMessageType(
                f"agent {self.address} has no handler for {type_!r} (it handles: {known})"
            )
        ctx.task_id, ctx.attempt, ctx.context = task_id, attempt, body.get("context")
        before = set_running(Running(task_id, self.address))  # its subtasks are its children
        try:
            if entry.wants_ctx:
                return entry.fn(self, body.get("body"), ctx)
            return entry.fn(self, body.get("body"))
        finally:
            set_running(before)

    # -- dispatch (the agent's thread) --------------------------------------------------------

    def _bind(
        self, name: str, node: Runtime, parent: Any, inbox: PriorityInbox | None = None
    ) -> None:
        super()._bind(name, node, parent, inbox)
        self.address = f"{name}@{node.name}"

    def _actor_loop_setup(self) -> None:
        self.state = AgentState.RUNNING
        super()._actor_loop_setup()
        if not self.actor_stopped.is_set():
            self.node._agent_started(self)

    def _handle_receive(self, message: Any) -> Any:
        if (  # the common case, a tell to a running agent, in one step: this runs per message
            type(message) is Envelope
            and message.deadline is None
            and message.kind != _CONTROL
            and self.state is _RUNNING
        ):
            self._handle_work(message)
            result = None
        else:
            result = self._receive(message)
        if self._has_idle_hook and self.inbox.depth() == 0 and not self._abandoned:
            self.on_idle()
        return result

    def _receive(self, message: Any) -> Any:
        if type(message) is not Envelope:
            return super()._handle_receive(message)
        if message.kind == _CONTROL:
            return self._on_control(message)
        if message.deadline is not None and message.deadline < now_ms():
            self.counters["expired"] += 1
            return None
        if self.state is _RUNNING:
            return self._handle_work(message)
        if self.state is AgentState.PAUSED:
            self._held.append(message)
            return None
        self._refuse(message, ResourceUnavailable(f"agent {self.address} is stopped; START it"))
        return None

    def _handle_work(self, env: Envelope) -> None:
        entry = self._handlers.get(env.type)
        if entry is None:
            self.counters["failed"] += 1
            known = ", ".join(sorted(t for t in self._handlers if t != TASK_RUN)) or "none"
            self._refuse(
                env,
                UnknownMessageType(
                    f"agent {self.address} has no handler for {env.type!r} (it handles: {known})"
                ),
            )
            return
        self._current = env
        try:
            if entry.wants_ctx:
                result = entry.fn(self, env.body, Context(self, env))
            else:
                result = entry.fn(self, env.body)
        except Exception as exc:
            self.counters["failed"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._refuse(env, exc)
            if self.crash_on_error:
                self._crash_expected = True
                raise
            return
        finally:
            self._current = None
        self.handled += 1
        if env.kind in _ANSWERED and type(result) is not Deferred:
            self._answer(env, env.reply(result, self.address))

    def _answer(self, env: Envelope, answer: Envelope) -> None:
        try:
            self.node.send(answer)
        except MacpError as exc:  # a reply that cannot cross nodes (the payload rule)
            self.counters["failed"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.log.warning("reply.refused", msg_id=env.id, type=env.type, error=str(exc))
            if answer.kind != Kind.ERROR:  # the asker learns why instead of waiting
                fallback = env.error(exc, self.address)
            else:  # an error whose data or message cannot cross: its class and plain text
                fallback = answer._replace(body=plain_error_body(answer.body))
            try:
                self.node.send(fallback)
            except MacpError as again:
                self.log.warning("reply.undeliverable", msg_id=env.id, error=str(again))

    def _refuse(self, env: Envelope, exc: BaseException) -> None:
        """Answer ``env`` with an error if its sender waits; else log the refusal."""
        if env.answered:
            self._answer(env, env.error(exc, self.address))
        else:
            self.log.warning(
                "message.failed", msg_id=env.id, type=env.type, src=env.src, error=repr(exc)
            )

    def _actor_loop_teardown(self) -> None:
        # Work held by PAUSE goes back to the head of the mailbox, for the next incarnation
        # (an abandoned incarnation's went to it when it was abandoned).
        if not self._abandoned:
            held, self._held = self._held, deque()
            self.inbox.push_front(held)
        super()._actor_loop_teardown()

    # -- supervision (the supervisor's thread) ------------------------------------------------

    def _in_hand(self) -> InHand | None:
        env = self._current
        if env is None:
            return None
        body = env.body
        if env.type != TASK_RUN or not isinstance(body, dict):
            return InHand(env.type, None, env.deadline)
        # A task's attempt ends at its timeout (the coordinator waits longer for a late reply).
        type_, task_id, timeout_s = body.get("type"), body.get("task_id"), body.get("timeout_s")
        due_ms = env.deadline
        if (
            isinstance(timeout_s, int | float)
            and not isinstance(timeout_s, bool)
            and 0 < timeout_s < math.inf  # from the network: NaN and infinity are no timeout
        ):
            due_ms = env.ts + int(timeout_s * 1000)
        return InHand(
            type_ if isinstance(type_, str) else env.type,
            task_id if isinstance(task_id, str) else None,
            due_ms,
        )

    def _abandon(self) -> None:
        super()._abandon()
        # What PAUSE held goes to the successor now, ahead of the mailbox. popleft is atomic:
        # should the old thread still be taking held work, each message goes to one of them.
        held: list[Envelope] = []
        while True:
            try:
                held.append(self._held.popleft())
            except IndexError:
                break
        self.inbox.push_front(held)


Agent._handlers = handler_table(Agent)
