"""What a handler gets besides the body: the message's context, and a way to answer later."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, TypeAlias

from macp.actors.model_report import MODEL_REPORT, report_body

if TYPE_CHECKING:
    from macp.envelope import Envelope, Wire
    from macp.runtime import NodeRuntime

__all__ = ["TASK_PROGRESS", "Context", "Deferred", "HandlingAgent", "Reply"]

TASK_PROGRESS: Final = "task.progress"


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
    """

    __slots__ = ("agent", "attempt", "envelope", "task_id")

    def __init__(self, agent: HandlingAgent, envelope: Envelope) -> None:
        self.agent = agent
        self.envelope = envelope
        self.task_id: str | None = None
        self.attempt = 0

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


Reply: TypeAlias = "Wire | Deferred"
"""What a handler may return: the reply itself, or a :class:`Deferred` promise of it."""
