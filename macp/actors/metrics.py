"""The monitor's arithmetic: outcome statistics, gauges by name, alert rules, history.

Metric names are ``area.measure{label=value}``, e.g. ``tasks.error_rate{type=summarize}`` or
``node.cpu_percent{node=n1}``. An alert rule is ``metric op threshold for duration`` with a
cooldown: it fires once the condition has held for ``for_s`` (and not within ``cooldown_s`` of
its last firing), stays firing while the condition holds, and clears when it stops holding.

Everything here is plain data driven with explicit times; the monitor actor owns it.
"""

from __future__ import annotations

import math
import operator
import re
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from macp.errors import InvalidParams
from macp.schema import Schema, check

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["BUCKETS_S", "History", "Outcomes", "Rule", "RuleSpec", "metric_name", "percentile"]

BUCKETS_S: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, math.inf)
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
_NUMBER: Final = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_EXPRESSION: Final = re.compile(
    r"^\s*(?P<metric>\S+)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<threshold>-?" + _NUMBER + r")"
    r"(?:\s+for\s+(?P<for>" + _NUMBER + r")\s*s)?\s*$"
)


def metric_name(measure: str, **labels: str) -> str:
    """``measure{k=v,...}`` with the labels in sorted order (no braces without labels)."""
    if not labels:
        return measure
    return measure + "{" + ",".join(f"{k}={labels[k]}" for k in sorted(labels)) + "}"


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; 0.0 for none."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Outcomes:
    """Completions of one kind (a task type, an agent, a workflow): counts, the completions of
    the last ``window_s`` for rates and percentiles (at most 2048 durations), and histogram
    buckets."""

    window_s: float
    ok: int = 0
    failed: int = 0
    duration_sum_s: float = 0.0
    recent: deque[tuple[float, bool]] = field(default_factory=deque)
    durations: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=2048))
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_S))

    def add(self, now: float, ok: bool, duration_s: float) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        self.duration_sum_s += duration_s
        self.recent.append((now, ok))
        self.durations.append((now, duration_s))
        for i, bound in enumerate(BUCKETS_S):
            if duration_s <= bound:
                self.buckets[i] += 1

    def gauges(self, now: float) -> dict[str, float]:
        """Throughput and error rate over the window; duration percentiles in ms."""
        while self.recent and self.recent[0][0] < now - self.window_s:
            self.recent.popleft()
        done = len(self.recent)
        failed = sum(1 for _, ok in self.recent if not ok)
        durations = [d for at, d in self.durations if at >= now - self.window_s]
        return {
            "throughput": done / self.window_s,
            "error_rate": failed / done if done else 0.0,
            "duration_p50_ms": percentile(durations, 0.50) * 1000,
            "duration_p95_ms": percentile(durations, 0.95) * 1000,
            "duration_p99_ms": percentile(durations, 0.99) * 1000,
        }


@dataclass
class History:
    """Each metric's recent values, at most ``size`` per metric."""

    size: int
    series: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)

    def record(self, ts_ms: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.series.setdefault(name, deque(maxlen=self.size)).append((ts_ms, value))

    def since(self, name: str, oldest_ms: int) -> list[list[float]]:
        return [[ts, v] for ts, v in self.series.get(name, ()) if ts >= oldest_ms]

    def increase(self, name: str, oldest_ms: int) -> tuple[float, int]:
        """How much counter ``name`` grew since ``oldest_ms`` (from the last sample before it,
        if kept; a drop is a restart from 0), and the milliseconds the samples span."""
        base: tuple[int, float] | None = None
        grown, last = 0.0, None
        for ts, value in self.series.get(name, ()):
            if ts < oldest_ms:
                base = (ts, value)
                continue
            if last is None:
                last = base or (ts, value)
            grown += value - last[1] if value >= last[1] else value
            last = (ts, value)
        if last is None:
            return 0.0, 0
        start = base[0] if base is not None else self._first_since(name, oldest_ms)
        return grown, last[0] - start

    def _first_since(self, name: str, oldest_ms: int) -> int:
        return next(ts for ts, _ in self.series[name] if ts >= oldest_ms)


_Seconds = Annotated[float, Field(strict=True, ge=0)]


class RuleSpec(Schema):
    """An alert rule as written: a ``name`` and a condition, either ``expr`` or ``metric``,
    ``op`` and ``threshold`` (a topology file's ``monitor.rules``, and ``monitor.add_rule``)."""

    name: str = Field(description="The rule's name; a rule added with a name in use replaces it.")
    expr: str | None = Field(
        default=None, description="The condition as 'METRIC OP THRESHOLD [for Ns]', e.g. "
        "'tasks.error_rate{type=x} > 0.5 for 10s'; instead of metric, op, threshold and for_s.",
    )  # fmt: skip
    metric: str | None = Field(
        default=None, description="A metric name, e.g. 'tasks.error_rate{type=x}'."
    )
    op: Literal[">", ">=", "<", "<=", "==", "!="] | None = Field(
        default=None, description="How the metric compares to the threshold."
    )
    threshold: Annotated[float, Field(strict=True)] | None = Field(
        default=None, description="The value the metric is compared to."
    )
    for_s: _Seconds = Field(
        default=0.0, description="How long the condition must hold before it fires."
    )
    cooldown_s: _Seconds = Field(default=60.0, description="The least time between two firings.")

    @field_validator("expr")
    @classmethod
    def _expression(cls, expr: str | None) -> str | None:
        if expr is not None and _EXPRESSION.match(expr) is None:
            raise ValueError(
                "must read 'METRIC OP THRESHOLD [for Ns]', e.g. "
                f"'tasks.error_rate{{type=x}} > 0.5 for 10s', not {expr!r}"
            )
        return expr

    @model_validator(mode="after")
    def _condition(self) -> Self:
        parts = ("metric", "op", "threshold")
        if self.expr is not None:
            if any(getattr(self, p) is not None for p in parts) or "for_s" in self.model_fields_set:
                raise ValueError(
                    "give the condition as 'expr' or as 'metric', 'op' and 'threshold', not both"
                )
            return self
        for part in parts:
            if getattr(self, part) is None:
                raise ValueError(f"{part!r} is required (or give the whole condition as 'expr')")
        return self


@dataclass
class Rule:
    """An alert rule (see the module docstring) and its state."""

    name: str
    metric: str
    op: str
    threshold: float
    for_s: float = 0.0
    cooldown_s: float = 60.0
    since: float | None = None  # when the condition started holding
    firing: bool = False
    last_fired: float = -math.inf

    @classmethod
    def parse(cls, raw: Any) -> Rule:
        """From a :class:`RuleSpec`'s fields, e.g. ``{name, expr, cooldown_s?}`` with ``expr``
        like ``"tasks.error_rate{type=x} > 0.5 for 10s"``.

        Raises:
            InvalidParams: a missing or malformed field, named in the message.
        """
        named = isinstance(raw, dict) and isinstance(raw.get("name"), str)
        where = f"rule {raw['name']!r}" if named else "an alert rule"
        return cls.of(check(RuleSpec, raw, where, InvalidParams))

    @classmethod
    def of(cls, spec: RuleSpec) -> Rule:
        """The rule ``spec`` describes, not yet evaluated."""
        if spec.expr is None:
            assert spec.metric is not None
            assert spec.op is not None
            assert spec.threshold is not None
            return cls(spec.name, spec.metric, spec.op, spec.threshold, spec.for_s, spec.cooldown_s)
        match = _EXPRESSION.match(spec.expr)
        assert match is not None
        return cls(
            spec.name, match["metric"], match["op"], float(match["threshold"]),
            float(match["for"] or 0), spec.cooldown_s,
        )  # fmt: skip

    def evaluate(self, value: float | None, now: float) -> str | None:
        """``"firing"`` or ``"resolved"`` when the rule changes state at ``now``, else None."""
        holds = value is not None and _OPS[self.op](value, self.threshold)
        if not holds:
            self.since = None
            if self.firing:
                self.firing = False
                return "resolved"
            return None
        if self.since is None:
            self.since = now
        if (
            not self.firing
            and now - self.since >= self.for_s
            and now - self.last_fired >= self.cooldown_s
        ):
            self.firing, self.last_fired = True, now
            return "firing"
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, "op": self.op,
                "threshold": self.threshold, "for_s": self.for_s, "cooldown_s": self.cooldown_s,
                "firing": self.firing}  # fmt: skip
