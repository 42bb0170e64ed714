"""Figures, the workload registry, deadlines and the sampling loop shared by every workload.

A workload is a function registered with :func:`workload` in one of the :data:`GROUPS` modules.
It receives a :class:`Ctx` and returns :class:`Figure` s, usually by handing :func:`measure` a
list of :class:`Run` s (one per system and variant): :func:`measure` runs them interleaved,
round after round, so that a slow moment of the shared machine hits every system alike, and
reports the median of the rounds.

To add a workload: write a function in a group module (or a new module listed in
:data:`GROUPS`), decorate it with ``@workload("W7", "what it measures", budget_s=...)``.
"""

from __future__ import annotations

import importlib
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Sequence

__all__ = [
    "GROUPS",
    "METRICS",
    "WORKLOADS",
    "BenchError",
    "BenchTimeout",
    "Ctx",
    "Deadline",
    "Figure",
    "Metric",
    "Run",
    "Workload",
    "latency_metrics",
    "load_workloads",
    "log",
    "measure",
    "payload",
    "percentile",
    "workload",
]

GROUPS = (
    "bench.local",
    "bench.remote",
    "bench.spawn",
    "bench.scatter",
    "bench.tasks",
    "bench.workflow",
    "bench.liveness",
)
"""The modules that register workloads (imported by :func:`load_workloads`)."""

NAME_64 = "x" * 64


def payload(i: int) -> dict[str, Any]:
    """The message every workload sends: five fields, one of them a 64-byte string."""
    return {"id": i, "name": NAME_64, "score": 1.5, "ok": True, "tags": ["a", "b"]}


class Metric(NamedTuple):
    unit: str
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    "msgs_per_s": Metric("msg/s", higher_is_better=True),
    "p50_us": Metric("us", higher_is_better=False),
    "p99_us": Metric("us", higher_is_better=False),
    "spawn_s": Metric("s", higher_is_better=False),
    "stop_s": Metric("s", higher_is_better=False),
    "rss_per_agent_kib": Metric("KiB", higher_is_better=False),
    "tasks_per_s": Metric("task/s", higher_is_better=True),
    "p50_ms": Metric("ms", higher_is_better=False),
    "p99_ms": Metric("ms", higher_is_better=False),
    "ms_per_step": Metric("ms", higher_is_better=False),
    "ms_per_task": Metric("ms", higher_is_better=False),
    "step_vs_task": Metric("x", higher_is_better=False),
    "detect_s": Metric("s", higher_is_better=False),
    "false_downs": Metric("events", higher_is_better=False),
}
"""Every metric a figure may carry, with its unit and which way is better."""


class BenchError(Exception):
    """A workload went wrong (lost messages, a peer that did not start, ...)."""


class BenchTimeout(BenchError):
    """A workload ran out of its time budget."""


class Deadline:
    """A workload's time budget; every wait in a workload is bounded by it."""

    def __init__(self, budget_s: float, what: str) -> None:
        self.budget_s = budget_s
        self.what = what
        self.end = time.monotonic() + budget_s

    def remaining(self, doing: str = "") -> float:
        """Seconds left; raise :class:`BenchTimeout` if none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise BenchTimeout(
                f"{self.what} ran out of its {self.budget_s:g} s budget"
                + (f" while {doing}" if doing else "")
            )
        return left

    def wait(self, event: threading.Event, doing: str) -> None:
        """Wait for ``event``; raise :class:`BenchTimeout` if the budget runs out first."""
        if not event.wait(self.remaining(doing)):
            self.remaining(doing)  # raises
            raise BenchTimeout(f"{self.what}: timed out while {doing}")


@dataclass
class Figure:
    """One reported number: the median of ``samples``.

    ``group`` pairs figures for ratios (only figures of one workload, metric and group are
    compared); ``main`` marks the macp figure ratios are computed from when macp has several
    variants in a group.
    """

    system: str
    workload: str
    metric: str
    value: float
    variant: str = ""
    samples: list[float] = field(default_factory=list)
    group: str = ""
    main: bool = True

    @property
    def unit(self) -> str:
        return METRICS[self.metric].unit

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "workload": self.workload,
            "metric": self.metric,
            "value": round(self.value, 3),
            "unit": self.unit,
            "variant": self.variant,
            "samples": [round(s, 3) for s in self.samples],
        }


@dataclass(frozen=True)
class Run:
    """One system (and variant) of a workload: ``fn`` runs one sample and returns its metrics."""

    system: str
    fn: Callable[[], dict[str, float]]
    variant: str = ""
    group: str = ""
    main: bool = True
    warmup: Callable[[], object] | None = None


@dataclass
class Ctx:
    """What a workload is given: the options, its deadline, and a place for notes."""

    workload: str
    quick: bool
    peers: bool
    samples: int
    deadline: Deadline
    notes: list[str] = field(default_factory=list)
    cleanups: list[Callable[[], object]] = field(default_factory=list)

    def n(self, full: int, quick: int) -> int:
        """The message count for this run."""
        return quick if self.quick else full

    def note(self, message: str) -> None:
        """A line for the reader (a skipped system, a choice made); shown on standard error."""
        self.notes.append(message)
        log(f"{self.workload}: note: {message}")

    def on_exit(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` when the workload ends, even if it fails (last registered, first run)."""
        self.cleanups.append(fn)


@dataclass(frozen=True)
class Workload:
    id: str
    title: str
    run: Callable[[Ctx], list[Figure]]
    budget_s: float
    quick_budget_s: float


WORKLOADS: dict[str, Workload] = {}


def workload(
    id: str, title: str, *, budget_s: float, quick_budget_s: float
) -> Callable[[Callable[[Ctx], list[Figure]]], Callable[[Ctx], list[Figure]]]:
    """Register the decorated function as workload ``id``, bounded by ``budget_s`` seconds."""

    def register(fn: Callable[[Ctx], list[Figure]]) -> Callable[[Ctx], list[Figure]]:
        if id in WORKLOADS:
            raise ValueError(f"workload {id} is registered twice")
        WORKLOADS[id] = Workload(id, title, fn, budget_s, quick_budget_s)
        return fn

    return register


def _order(workload_id: str) -> tuple[int, str]:
    digits = "".join(c for c in workload_id if c.isdigit())
    return (int(digits) if digits else 0, workload_id)


def load_workloads() -> list[Workload]:
    """Every registered workload, in id order (W1, W2, ..., W10)."""
    for module in GROUPS:
        importlib.import_module(module)
    return [WORKLOADS[k] for k in sorted(WORKLOADS, key=_order)]


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of already sorted values."""
    if not sorted_values:
        raise BenchError("no values to take a percentile of")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_metrics(latencies_ns: list[int]) -> dict[str, float]:
    """p50 and p99 in microseconds of round-trip times in nanoseconds."""
    ordered = sorted(latencies_ns)
    return {
        "p50_us": percentile(ordered, 50) / 1000,
        "p99_us": percentile(ordered, 99) / 1000,
    }


def log(message: str) -> None:
    """A progress line on standard error (standard output carries only JSON lines)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def measure(ctx: Ctx, runs: list[Run]) -> list[Figure]:
    """Run every ``Run`` ``ctx.samples`` times, interleaved; the median of each metric."""
    for run in runs:
        if run.warmup is not None:
            ctx.deadline.remaining(f"warming up {run.system} {run.variant}".strip())
            run.warmup()
    collected: list[dict[str, list[float]]] = [{} for _ in runs]
    for round_ in range(ctx.samples):
        for run, metrics in zip(runs, collected, strict=True):
            label = f"{run.system}{f' [{run.variant}]' if run.variant else ''}"
            ctx.deadline.remaining(f"starting {label} sample {round_ + 1}")
            sample = run.fn()
            for metric, value in sample.items():
                metrics.setdefault(metric, []).append(float(value))
            shown = ", ".join(f"{m}={_fmt(v)}" for m, v in sample.items())
            log(f"{ctx.workload} {label} sample {round_ + 1}/{ctx.samples}: {shown}")
    figures: list[Figure] = []
    for run, metrics in zip(runs, collected, strict=True):
        for metric, values in metrics.items():
            figures.append(
                Figure(
                    system=run.system,
                    workload=ctx.workload,
                    metric=metric,
                    value=statistics.median(values),
                    variant=run.variant,
                    samples=values,
                    group=run.group,
                    main=run.main,
                )
            )
    return figures
