"""Requests for assistance: who helps, at what priority, and the answers awaited.

A request names the capabilities it needs. The helper is chosen when it is asked: among the
session's active participants with every capability (when a ``session_id`` is given), the
least loaded routable one; else (no session, or no participant has them) the least loaded
routable agent of the cluster with them; never the ``requester`` itself. The work is a task
submitted to the coordinator, pinned to that helper, with the urgency as its priority
(:data:`~.messages.URGENCY`: low 0, normal 1, high 2, critical 3), so the coordinator's
journal, retries, timeouts and metrics hold for it. The request is answered when the task
ends: ``{helper, task_id, answer, priority, urgency, session_id, from_session}``, or the
task's error; after ``timeout_s`` without an end it is answered :class:`~macp.errors.AskTimeout`
(the task goes on: ``data["task_id"]`` follows it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from macp.actors._params import body_map, is_number, text
from macp.actors.teams.messages import SESSION_ASSIST, URGENCY
from macp.errors import AskTimeout, InvalidParams, ResourceUnavailable, error_from_body

if TYPE_CHECKING:
    from macp._timers import Timer
    from macp.actors.context import Deferred
    from macp.envelope import Wire

__all__ = ["Assist", "AssistRequest", "Pending"]

_EXAMPLE = "{'capabilities': ['summarize'], 'body': {...}, 'urgency': 'high'}"
DEFAULT_TIMEOUT_S = 60.0


class AssistRequest(NamedTuple):
    """A request for assistance, checked."""

    capabilities: list[str]
    body: Wire
    type: str
    urgency: str
    session_id: str | None
    timeout_s: float
    requester: str | None

    @property
    def priority(self) -> int:
        return URGENCY[self.urgency]

    @classmethod
    def of(cls, body: Wire) -> AssistRequest:
        """The request a ``session.assist`` body holds.

        Raises:
            InvalidParams: a field is missing or wrong (named, with the fix).
        """
        got = body_map(SESSION_ASSIST, body, _EXAMPLE)
        capabilities = got.get("capabilities")
        if (
            not isinstance(capabilities, list)
            or not capabilities
            or not all(isinstance(c, str) and c for c in capabilities)
        ):
            raise InvalidParams(
                f"{SESSION_ASSIST} needs 'capabilities' as a non-empty list of strings, "
                f"not {capabilities!r:.60}; e.g. ['summarize']"
            )
        type_ = text(SESSION_ASSIST, got, "type") if got.get("type") is not None else None
        urgency = got.get("urgency", "normal")
        if urgency not in URGENCY:
            raise InvalidParams(
                f"{SESSION_ASSIST} 'urgency' must be one of {', '.join(URGENCY)}, "
                f"not {urgency!r:.40}"
            )
        timeout_s = got.get("timeout_s", DEFAULT_TIMEOUT_S)
        if not is_number(timeout_s) or not 0 < timeout_s <= 3600:  # noqa: PLR2004
            raise InvalidParams(
                f"{SESSION_ASSIST} 'timeout_s' must be a number of seconds above 0 and at most "
                f"3600, not {timeout_s!r:.40}"
            )
        optional = {}
        for name in ("session_id", "requester"):
            optional[name] = text(SESSION_ASSIST, got, name) if got.get(name) is not None else None
        return cls(
            capabilities=sorted(set(capabilities)), body=got.get("body"),
            type=type_ or capabilities[0], urgency=str(urgency),
            session_id=optional["session_id"], timeout_s=float(timeout_s),
            requester=optional["requester"],
        )  # fmt: skip

    def choose(self, capable: list[str], participants: list[str] | None) -> tuple[str, bool]:
        """The helper among ``capable`` (least loaded first), a session participant first;
        and whether it is one.

        Raises:
            ResourceUnavailable: no agent but the requester has the capabilities.
        """
        others = [a for a in capable if a != self.requester]
        if participants is not None:
            ours = [a for a in others if a in participants]
            if ours:
                return ours[0], True
        if not others:
            raise ResourceUnavailable(
                f"no available agent has the capabilities {self.capabilities}"
                + (f" besides {self.requester}" if self.requester else "")
                + "; start one, or ask for other capabilities"
            )
        return others[0], False


@dataclass(slots=True)
class Assist:
    """A request answered when its task ends."""

    reply: Deferred
    request: AssistRequest
    helper: str
    from_session: bool
    timer: Timer | None = None

    def answer(self, task_id: str) -> dict[str, Wire]:
        return {
            "task_id": task_id, "helper": self.helper, "priority": self.request.priority,
            "urgency": self.request.urgency, "session_id": self.request.session_id,
            "from_session": self.from_session,
        }  # fmt: skip


class Pending:
    """The requests awaiting their task's end, by task id."""

    def __init__(self) -> None:
        self._waiting: dict[str, Assist] = {}

    def add(self, task_id: str, assist: Assist) -> None:
        self._waiting[task_id] = assist

    def done(self, body: dict[str, Any]) -> None:
        """The coordinator's ``task.done``: answer the request (if it still waits)."""
        assist = self._waiting.pop(str(body.get("task_id")), None)
        if assist is None:
            return
        if assist.timer is not None:
            assist.timer.cancel()
        task_id = str(body["task_id"])
        if body.get("state") == "succeeded":
            assist.reply.resolve({**assist.answer(task_id), "answer": body.get("result")})
        else:
            assist.reply.fail(error_from_body(body.get("error")))

    def expire(self, task_id: str) -> None:
        """The request's ``timeout_s`` is over: answer it with a timeout (the task goes on)."""
        assist = self._waiting.pop(task_id, None)
        if assist is not None:
            assist.reply.fail(
                AskTimeout(
                    f"{assist.helper} did not answer within {assist.request.timeout_s:g} s; "
                    f"task {task_id} goes on (task_result follows it)",
                    data={"task_id": task_id, "helper": assist.helper},
                )
            )

    def cancel_all(self) -> None:
        for assist in self._waiting.values():
            if assist.timer is not None:
                assist.timer.cancel()
        self._waiting.clear()
