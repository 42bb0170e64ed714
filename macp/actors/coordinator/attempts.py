"""A task's attempts, one entry each: who ran it, where, when, and how it ended.

The task table keeps them (a list of maps, the task's ``attempt_history``) as it changes the
task (:mod:`.table`), in the task's record, so a restarted head shows them as before. An
entry is ``{attempt, agent, node, assigned_ms, started_ms, ended_ms, outcome, error?}``;
``outcome`` is an :class:`Outcome` value, ``running`` while the attempt is in flight, and
``error`` ``{code, message}`` for an attempt that failed. A record journaled before the
entries were kept gets them from its bounded ``log`` (:func:`from_log`: the attempts the log
still holds).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from macp.errors import AskTimeout, error_body

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "KEPT_ATTEMPTS", "Outcome", "begin", "end", "failed", "from_log", "short_error", "started",
]  # fmt: skip

KEPT_ATTEMPTS: Final = 50
"""Attempts a task keeps (the oldest go first: a task gives up long before, by default)."""


class Outcome(StrEnum):
    """How one attempt ended (``running``: it has not)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    NODE_DOWN = "node_down"
    CANCELLED = "cancelled"


_RUNNING: Final = Outcome.RUNNING.value
_ENDS: Final = {"succeeded": Outcome.SUCCEEDED, "failed": Outcome.FAILED,
                "cancelled": Outcome.CANCELLED}  # fmt: skip


def short_error(error: Mapping[str, Any] | BaseException | None) -> dict[str, Any] | None:
    """``{code, message}`` of an error (a stored error body, or an exception)."""
    if error is None:
        return None
    body = error_body(error) if isinstance(error, BaseException) else error
    return {"code": body.get("code"), "message": str(body.get("message", ""))}


def begin(entries: list[dict[str, Any]], attempt: int, agent: str, now: int) -> None:
    """Attempt number ``attempt`` went to ``agent``."""
    entries.append({
        "attempt": attempt, "agent": agent, "node": agent.partition("@")[2] or None,
        "assigned_ms": now, "started_ms": None, "ended_ms": None, "outcome": _RUNNING,
    })  # fmt: skip
    if len(entries) > KEPT_ATTEMPTS:
        del entries[: len(entries) - KEPT_ATTEMPTS]


def started(entries: list[dict[str, Any]], now: int) -> None:
    """The current attempt's agent acknowledged it."""
    current = _current(entries)
    if current is not None:
        current["started_ms"] = now


def end(
    entries: list[dict[str, Any]],
    outcome: Outcome,
    now: int,
    error: BaseException | Mapping[str, Any] | None = None,
) -> None:
    """The current attempt ended (if one is in flight)."""
    current = _current(entries)
    if current is None:
        return
    current["ended_ms"], current["outcome"] = now, outcome.value
    if error is not None and outcome is not Outcome.SUCCEEDED:
        current["error"] = short_error(error)


def failed(error: BaseException, *, node_failure: bool) -> Outcome:
    """The outcome of an attempt that failed with ``error``."""
    if node_failure:
        return Outcome.NODE_DOWN
    return Outcome.TIMED_OUT if isinstance(error, AskTimeout) else Outcome.FAILED


def _current(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    if entries and entries[-1].get("outcome") == _RUNNING:
        return entries[-1]
    return None


def from_log(log: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The attempts an older record's log still holds (its oldest may have gone)."""
    entries: list[dict[str, Any]] = []
    for event in log:
        kind, ts = event.get("event"), event.get("ts")
        if kind == "assigned":
            agent = str(event.get("agent") or "")
            entries.append({
                "attempt": event.get("attempt"), "agent": agent,
                "node": agent.partition("@")[2] or None, "assigned_ms": ts, "started_ms": None,
                "ended_ms": None, "outcome": _RUNNING,
            })  # fmt: skip
            continue
        current = entries[-1] if entries and entries[-1]["outcome"] == _RUNNING else None
        if current is None:
            continue
        if kind == "failed_attempt":
            outcome = Outcome.NODE_DOWN if event.get("node_down") else Outcome.FAILED
            if str(event.get("error", "")).startswith("AskTimeout"):
                outcome = Outcome.TIMED_OUT
            error = {"code": None, "message": str(event.get("error", ""))}
            current.update(ended_ms=ts, outcome=outcome.value, error=error)
        elif kind == "recovered":
            current.update(ended_ms=ts, outcome=Outcome.NODE_DOWN.value)
        elif kind in _ENDS:
            current.update(ended_ms=ts, outcome=_ENDS[str(kind)].value)
    return entries
