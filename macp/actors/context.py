"""What a handler gets besides the body: the message's context, a way to answer later, and
a way to delegate subtasks.

A task a handler submits while it runs a task (:meth:`Context.delegate`, or a
:class:`~macp.Cluster` used on the handler's thread: :func:`running_task` tells it which task
runs there) is a child of that task, delegated by the handler's agent (see
:mod:`macp.actors.coordinator.lineage`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, TypeAlias

from macp.actors.model_report import MODEL_REPORT, report_body
from macp.errors import MacpError

if TYPE_CHECKING:
    from macp.envelope import Envelope, Wire
    from macp.runtime import NodeRuntime

__all__ = [
    "RESULT", "STATUS", "SUBMIT", "TASK_PROGRESS", "Context", "Deferred", "HandlingAgent", "Reply",
    "Running", "Subtask", "running_task",
]  # fmt: skip

TASK_PROGRESS: Final = "task.progress"
SUBMIT: Final = "coordinator.submit"
"""The coordinator's messages a subtask is submitted and waited for with
(:mod:`macp.actors.coordinator.messages` lists them all)."""
RESULT: Final = "coordinator.result"
STATUS: Final = "coordinator.status"
_WAITED_FOR: Final = ("assigned", "running")


class Running(NamedTuple):
    """The task a handler runs on this thread, and its agent."""

    task_id: str
    agent: str


_running = threading.local()  # never crosses threads: each agent's handlers run on its own


def running_task() -> Running | None:
    """The task the handler on this thread runs (``None`` outside a task's handler)."""
    running: Running | None = getattr(_running, "task", None)
    return running


def set_running(running: Running | None) -> Running | None:
    """Say which task the handler on this thread runs (the agent does, around a task's
    handler); the one said before."""
    before: Running | None = getattr(_running, "task", None)
    _running.task = running
    return before


class HandlingAgent(Protocol):
    """The agent handling a message, as its context sees it (an :class:`~macp.Agent`)."""

    @property
    def address(self) -> str: ...
    @property
    def node(self) -> NodeRuntime: ...
    @property
    def model_type(self) -> str | None: ...
    @property
    def model_version(self) -> str | None: ...

    def tell(self, address: str, type: str, body: Wire = None, *, prio: int = ...) -> None:
        """Send a one-way message from the agent."""

    def _answer(self, env: Envelope, answer: Envelope) -> None:
        """Send ``answer`` to ``env``'s asker (a reply that cannot cross: an error instead)."""


class Context:
    """What a handler knows about the message it is handling.

    Attributes:
        agent: the agent handling the message.
        envelope: the message itself.
        task_id: the coordinator's task id when the message is a task, else ``None``.
        attempt: which attempt of that task this is (1 for the first).
        context: the task's contextual data, given by whoever submitted or delegated it
            (``None`` if none was).
    """

    __slots__ = ("agent", "attempt", "context", "envelope", "task_id")

    def __init__(self, agent: HandlingAgent, envelope: Envelope) -> None:
        self.agent = agent
        self.envelope = envelope
        self.task_id: str | None = None
        self.attempt = 0
        self.context: Any = None

    @property
    def sender(self) -> str:
        """The sender's address."""
        return self.envelope.src

    @property
    def msg_id(self) -> str:
        return self.envelope.id

    @property
    def node(self) -> NodeRuntime:
        return self.agent.node

    def progress(self, fraction: float, message: str = "") -> None:
        """Report a task's progress (``0.0`` to ``1.0``) to the coordinator; a no-op otherwise."""
        if self.task_id is not None:
            progress = min(1.0, max(0.0, float(fraction)))
            body: dict[str, Wire] = {
                "task_id": self.task_id, "attempt": self.attempt,
                "progress": progress, "message": message,
            }  # fmt: skip
            self.agent.tell(self.envelope.src, TASK_PROGRESS, body)

    def report(self, **figures: object) -> None:
        """Report figures of one call of the agent's model to the monitor (at-most-once):
        ``inference_ms`` (number >= 0), ``tokens_in``, ``tokens_out`` (whole numbers >= 0),
        ``error`` (``True`` or the error's text). They count for the agent's model
        (``model_type@model_version``) and the agent (see :mod:`macp.actors.model_report`).

        Raises:
            InvalidParams: the agent declares no ``model_type``, or a figure is unknown or of
                the wrong type (nothing is sent).
        """
        agent = self.agent
        body = report_body(agent.address, agent.model_type, agent.model_version, figures)
        node = agent.node
        agent.tell(f"monitor@{node.head or node.name}", MODEL_REPORT, body)

    def delegate(self, type: str, body: Wire = None, **spec: Wire) -> Subtask:
        """Submit a subtask of the task this handler runs: its ``parent`` is that task, its
        ``delegated_by`` this agent. ``spec`` takes any field of a task (``capabilities``,
        ``agent`` to pin it, ``context``, ``deadline``, ``timeout_s``...). Outside a task's
        handler it is a task of its own.

        Raises:
            MacpError: the coordinator refused it (e.g. :class:`~macp.InvalidParams`).
        """
        node = self.agent.node
        head = node.head or node.name
        task: dict[str, Wire] = {**spec, "type": type, "body": body}
        if self.task_id is not None:
            task.setdefault("parent", self.task_id)
            task.setdefault("delegated_by", self.agent.address)
        answer = node.ask(f"coordinator@{head}", SUBMIT, task).get()
        return Subtask(node, head, str(answer["task_id"]))

    submit_subtask = delegate  # the same, by another name

    def is_cancelled(self) -> bool:
        """Whether the coordinator no longer waits for this attempt of the task: the task was
        cancelled (alone, or with its parent), or ended or moved on otherwise (its deadline
        passed, another attempt runs it). It asks the coordinator: call it between the steps
        of long work, not in a tight loop. ``False`` outside a task's handler, and while the
        coordinator does not answer (the head restarting: the work goes on)."""
        if self.task_id is None:
            return False
        node = self.agent.node
        head = node.head or node.name
        body: dict[str, Wire] = {"task_id": self.task_id}
        try:
            status = node.ask(f"coordinator@{head}", STATUS, body).get()
        except MacpError:
            return False
        return status["state"] not in _WAITED_FOR or status["attempts"] != self.attempt

    def defer(self) -> Deferred:
        """Answer later: return this from the handler, then call ``resolve`` or ``fail`` on it
        (from any thread) when the answer is known."""
        return Deferred(self.agent, self.envelope)


class Deferred:
    """A reply promised by a handler that returned it; settled once, from any thread."""

    __slots__ = ("_agent", "_envelope", "done")

    def __init__(self, agent: HandlingAgent, envelope: Envelope) -> None:
        self._agent = agent
        self._envelope = envelope
        self.done = False

    def resolve(self, value: Wire) -> None:
        """Send ``value`` as the reply."""
        if not self.done and self._envelope.answered:
            self.done = True
            self._agent._answer(self._envelope, self._envelope.reply(value, self._agent.address))

    def fail(self, exc: BaseException) -> None:
        """Send ``exc`` as the error reply."""
        if not self.done and self._envelope.answered:
            self.done = True
            self._agent._answer(self._envelope, self._envelope.error(exc, self._agent.address))


class Subtask:
    """A subtask :meth:`Context.delegate` submitted: its id, and its result."""

    __slots__ = ("_head", "_node", "id")

    def __init__(self, node: NodeRuntime, head: str, task_id: str) -> None:
        self._node, self._head, self.id = node, head, task_id

    def __repr__(self) -> str:
        return f"Subtask({self.id!r})"

    def result(self, timeout_s: float = 60.0) -> Any:
        """Wait for the subtask to end: its result, or its error raised as its own class."""
        body: dict[str, Wire] = {"task_id": self.id}
        return self._node.ask(f"coordinator@{self._head}", RESULT, body, timeout_s=timeout_s).get()


Reply: TypeAlias = "Wire | Deferred"
"""What a handler may return: the reply itself, or a :class:`Deferred` promise of it."""
