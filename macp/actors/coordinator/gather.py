"""Scatter-gather aggregation: when N expected answers add up to a result, or to a failure.

Modes:

- ``all``: every expected agent answers; succeeds with every answer if no more than
  ``failure_threshold`` (default 0) of them failed.
- ``first``: the first success wins; fails once more than ``failure_threshold`` (default N-1,
  so: all of them) failed.
- ``majority``: more than half of the *expected* voters (not of those who answered) return an
  equal result (equal by value).
- ``quorum``: ``quorum`` expected voters return an equal result.

Majority and quorum fail as soon as no value can still reach the count, or when more than
``failure_threshold`` voters failed; every mode fails at its deadline if undecided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from macp.errors import InvalidParams

__all__ = ["MODES", "Decision", "Gather", "check_mode"]

MODES: Final = ("all", "first", "majority", "quorum")


def check_mode(mode: object) -> None:
    """Refuse an aggregation that is not one of :data:`MODES`."""
    if mode not in MODES:
        raise InvalidParams(f"aggregation must be one of {', '.join(MODES)}, not {mode!r}")


class Decision(NamedTuple):
    ok: bool
    result: Any
    reason: str


def _canonical(value: Any) -> Any:
    """A hashable form of ``value`` in which equal data (in any key order) are equal, and
    values that differ on the wire (``true`` and ``1``, ``1`` and ``1.0``) are not."""
    if isinstance(value, bool | int | float):
        return (type(value).__name__, value)
    if isinstance(value, dict):
        return ("{}", tuple(sorted((str(k), _canonical(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("[]", tuple(_canonical(v) for v in value))
    return value


@dataclass
class Gather:
    """Collects answers from ``expected`` agents until a :class:`Decision` is reached."""

    expected: list[str]
    mode: str
    quorum: int | None = None
    failure_threshold: int | None = None
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.expected)
        check_mode(self.mode)
        if self.mode == "majority":
            self.quorum = n // 2 + 1
        if self.mode == "quorum" and (
            isinstance(self.quorum, bool) or not isinstance(self.quorum, int)
            or not 1 <= self.quorum <= n
        ):  # fmt: skip
            raise InvalidParams(f"quorum must be an integer from 1 to {n} (the agents asked)")
        threshold = self.failure_threshold
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 <= threshold <= n
        ):
            raise InvalidParams(
                f"failure_threshold must be an integer from 0 to {n} (the agents asked)"
            )
        if self.failure_threshold is None:
            self.failure_threshold = (
                n - 1
                if self.mode == "first"
                else (0 if self.mode == "all" else n - (self.quorum or n))
            )

    @property
    def failures(self) -> int:
        return sum(1 for a in self.answers.values() if not a["ok"])

    def add(self, agent: str, ok: bool, value: Any) -> Decision | None:
        """Record ``agent``'s answer (the first one per agent counts); the decision, if any."""
        if agent not in self.expected or agent in self.answers:
            return None
        self.answers[agent] = {"ok": ok, "result" if ok else "error": value}
        return self._decide()

    def expire(self) -> Decision:
        """The decision at the deadline."""
        return self._decide() or Decision(
            ok=False,
            result=self._summary(),
            reason=f"deadline passed with {len(self.answers)} of {len(self.expected)} answers",
        )

    def _summary(self) -> list[dict[str, Any]]:
        return [{"agent": a, **self.answers[a]} for a in self.expected if a in self.answers]

    def _decide(self) -> Decision | None:
        n, failures = len(self.expected), self.failures
        assert self.failure_threshold is not None
        if failures > self.failure_threshold:
            return Decision(
                ok=False, result=self._summary(), reason=f"{failures} of {n} agents failed"
            )
        if self.mode == "all":
            if len(self.answers) == n:
                return Decision(ok=True, result=self._summary(), reason="all answered")
            return None
        if self.mode == "first":
            for agent in self.expected:
                answer = self.answers.get(agent)
                if answer is not None and answer["ok"]:
                    return Decision(
                        ok=True, result=answer["result"], reason=f"first answer from {agent}"
                    )
            return None
        return self._vote()

    def _vote(self) -> Decision | None:
        assert self.quorum is not None
        counts: dict[Any, list[Any]] = {}
        for answer in self.answers.values():
            if answer["ok"]:
                counts.setdefault(_canonical(answer["result"]), []).append(answer["result"])
        best = max(counts.values(), key=len, default=[])
        if len(best) >= self.quorum:
            return Decision(
                ok=True, result=best[0], reason=f"{len(best)} of {len(self.expected)} agreed"
            )
        remaining = len(self.expected) - len(self.answers)
        if len(best) + remaining < self.quorum:
            return Decision(
                ok=False,
                result=self._summary(),
                reason=f"no value can reach {self.quorum} of {len(self.expected)} votes",
            )
        return None
