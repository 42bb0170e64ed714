"""What the coordinator sends: task attempts to agents, scatters to their voters, leases of a
workflow step's resources, and the outcomes handed back to the coordinator's own thread.

An attempt times out at its task's timeout (a timer: :class:`AttemptDue`), but its reply is
awaited for longer, so a late success still completes the task if nothing else has; the
agent's supervisor abandons a handler still running past the timeout (plus a grace). Whatever
thread settles an ask hands its outcome to the coordinator as a message (:class:`Outcome`),
so every decision is taken on the coordinator's thread.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from macp.actors.agent import TASK_RUN
from macp.errors import MacpError

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.actors.coordinator.task import Task
    from macp.envelope import Wire
    from macp.futures import AskFuture
    from macp.runtime import NodeRuntime

__all__ = ["AttemptDue", "Courier", "Outcome", "ScatterDue"]


class Outcome(NamedTuple):
    """How one attempt ended (for a scatter, one voter's answer; ``attempt`` 0)."""

    task_id: str
    attempt: int
    agent: str
    ok: bool
    value: Any


class AttemptDue(NamedTuple):
    """An attempt's time is up (whether or not its agent will still answer)."""

    task_id: str
    attempt: int


class ScatterDue(NamedTuple):
    """A scatter's deadline: it is decided with the answers in by then."""

    task_id: str


class Courier:
    """Sends the coordinator's asks and hands their outcomes back to it.

    Args:
        node: the coordinator's node.
        address: the coordinator's address (the asks' sender).
        tell_self: queues a message to the coordinator (safe from any thread).
    """

    def __init__(self, node: NodeRuntime, address: str, tell_self: Callable[[Any], None]) -> None:
        self._node = node
        self._address = address
        self._tell_self = tell_self

    def run(self, task: Task, agent: str, attempt: int) -> None:
        """Send attempt ``attempt`` of ``task`` to ``agent``, and time it."""
        timeout_s = task.timeout_s
        body = {"task_id": task.id, "attempt": attempt, "type": task.type, "body": task.body,
                "timeout_s": timeout_s}  # fmt: skip
        if task.context is not None:
            body["context"] = task.context
        self._node.scheduler.call_later(timeout_s, self._tell_self, AttemptDue(task.id, attempt))
        try:
            future = self._node.ask(
                agent, TASK_RUN, body, timeout_s=2 * timeout_s + 1, prio=task.priority,
                src=self._address,
            )  # fmt: skip
        except MacpError as e:
            self._tell_self(Outcome(task.id, attempt, agent, ok=False, value=e))
            return
        future.add_done_callback(partial(self._settled, task.id, attempt, agent))

    def scatter(self, task: Task, attempt: int) -> None:
        """Send ``task`` to every voter it expects, and time it."""
        run = {"task_id": task.id, "attempt": attempt, "type": task.type, "body": task.body}
        for address in task.expected:
            try:
                future = self._node.ask(
                    address, TASK_RUN, run, timeout_s=task.timeout_s, prio=task.priority,
                    src=self._address,
                )  # fmt: skip
            except MacpError as e:
                self._tell_self(Outcome(task.id, 0, address, ok=False, value=e))
                continue
            future.add_done_callback(partial(self._settled, task.id, 0, address))
        self._node.scheduler.call_later(task.timeout_s, self._tell_self, ScatterDue(task.id))

    def lease(self, owner: str, amounts: dict[str, float]) -> str:
        """Lease ``amounts`` from the resource manager of this node for ``owner`` (waits for
        its answer): the lease id.

        Raises:
            InsufficientResources: they are not free (its ``data`` says if they never can be).
            MacpError: the resource manager did not answer.
        """
        body: dict[str, Wire] = {"owner": owner, "amounts": dict(amounts)}
        lease = self._node.ask(f"resources@{self._node.name}", "resources.allocate", body).get()
        return str(lease["lease_id"])

    def release(self, lease_id: str) -> None:
        """Give a lease back (a tell: at most once)."""
        body: dict[str, Wire] = {"lease_id": lease_id}
        self._node.tell(f"resources@{self._node.name}", "resources.release", body)

    def _settled(self, task_id: str, attempt: int, agent: str, future: AskFuture) -> None:
        """On whichever thread settled the ask: hand the outcome to the coordinator."""
        error = future.exception()
        value = future.result() if error is None else error
        self._tell_self(Outcome(task_id, attempt, agent, ok=error is None, value=value))
