"""The monitor's figures of the models agents run on, from what handlers report.

A handler reports one call of its agent's model with ``ctx.report(...)``
(:mod:`macp.actors.model_report`); the monitor counts each report for the pair (model, agent),
where the model is ``type@version``, and answers the figures per model and per agent. For a
model, or an agent:

- totals: ``reports``, ``errors``, ``tokens_in``, ``tokens_out``;
- over the monitor's ``window_s``: ``error_rate`` (errors / reports), ``inference_p50_ms``,
  ``inference_p95_ms``, ``inference_p99_ms`` (of the reports that give ``inference_ms``),
  ``tokens_in_per_s``, ``tokens_out_per_s`` and ``reports_per_s``.

They are gauges of every sample too, so alert rules watch them: ``model.MEASURE{model=M}`` for
a model, ``model.MEASURE{agent=A,model=M}`` for one agent of it (e.g.
``model.error_rate{model=llm@2} > 0.2``), and ``model.health{model=M}`` (0 healthy, 1 degraded,
2 failing); ``monitor.model_reports_dropped`` counts the malformed reports dropped (a
report is a tell from the network: there is no one to answer).

Health, of each model over the window (:class:`ModelThresholds`): ``failing`` when its error
rate is at least ``failing_error_rate`` or its p95 inference time at least ``failing_p95_ms``;
else ``degraded`` when at least ``degraded_error_rate`` or ``degraded_p95_ms``; else
``healthy`` (a model without reports in the window is healthy: nothing wrong was seen).

Prometheus: ``macp_model_reports_total``, ``macp_model_errors_total``,
``macp_model_tokens_total{direction=in|out}`` (counters), ``macp_model_inference_seconds`` (a
histogram), each labelled ``model`` and ``agent``, and ``macp_model_error_rate``,
``macp_model_health`` (gauges by ``model``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import Field

from macp._storable import is_number
from macp.actors.metrics import BUCKETS_S, metric_name, percentile
from macp.schema import Schema

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["HEALTH", "ModelFigures", "ModelStats", "ModelThresholds"]

HEALTH: Final = ("healthy", "degraded", "failing")
_KEPT: Final = 2048  # inference times kept per (model, agent) for the percentiles


class ModelThresholds(Schema):
    """When a model is degraded or failing (a topology file's ``monitor.models``, and
    ``start_control_plane(monitor={"models": ...})``)."""

    degraded_error_rate: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.1
    """Error rate over the window at or above which a model is degraded."""
    failing_error_rate: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.5
    """Error rate over the window at or above which a model is failing."""
    degraded_p95_ms: Annotated[float, Field(strict=True, gt=0)] = 5000.0
    """p95 inference time (ms) over the window at or above which a model is degraded."""
    failing_p95_ms: Annotated[float, Field(strict=True, gt=0)] = 30000.0
    """p95 inference time (ms) over the window at or above which a model is failing."""


@dataclass
class ModelStats:
    """The reports of one agent about one model: totals, the last window's, and buckets."""

    reports: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    inference_sum_s: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_S))
    recent: deque[tuple[float, bool, int, int]] = field(default_factory=deque)
    inference: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=_KEPT))
    last_error: str | None = None

    def add(self, now: float, report: dict[str, Any]) -> None:
        error = bool(report.get("error"))
        tokens_in, tokens_out = int(report.get("tokens_in", 0)), int(report.get("tokens_out", 0))
        self.reports += 1
        self.errors += error
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.recent.append((now, error, tokens_in, tokens_out))
        if error and isinstance(report.get("error_message"), str):
            self.last_error = report["error_message"]
        if "inference_ms" in report:
            seconds = float(report["inference_ms"]) / 1000
            self.inference_sum_s += seconds
            self.inference.append((now, seconds * 1000))
            for i, bound in enumerate(BUCKETS_S):
                if seconds <= bound:
                    self.buckets[i] += 1

    def prune(self, oldest: float) -> None:
        while self.recent and self.recent[0][0] < oldest:
            self.recent.popleft()


def _figures(stats: list[ModelStats], oldest: float, window_s: float) -> dict[str, Any]:
    """The figures of a model or an agent (see the module docstring) from its stats."""
    recent = [r for s in stats for r in s.recent]
    times = [ms for s in stats for at, ms in s.inference if at >= oldest]
    failed = sum(1 for _, error, _, _ in recent if error)
    return {
        "reports": sum(s.reports for s in stats),
        "errors": sum(s.errors for s in stats),
        "tokens_in": sum(s.tokens_in for s in stats),
        "tokens_out": sum(s.tokens_out for s in stats),
        "error_rate": failed / len(recent) if recent else 0.0,
        "inference_p50_ms": percentile(times, 0.50),
        "inference_p95_ms": percentile(times, 0.95),
        "inference_p99_ms": percentile(times, 0.99),
        "reports_per_s": len(recent) / window_s,
        "tokens_in_per_s": sum(r[2] for r in recent) / window_s,
        "tokens_out_per_s": sum(r[3] for r in recent) / window_s,
    }


class ModelFigures:
    """Every report of the cluster, by (model, agent); the monitor owns it (one thread)."""

    def __init__(self, window_s: float, thresholds: ModelThresholds) -> None:
        self.window_s = window_s
        self.thresholds = thresholds
        self.stats: dict[tuple[str, str], ModelStats] = {}
        self.dropped = 0  # malformed reports, from the network

    def add(self, now: float, report: object) -> bool:
        """Count one ``monitor.model_report`` body; whether it was well formed (one from the
        network that is not is dropped: the agent's ``ctx.report`` checked it already)."""
        if not isinstance(report, dict):
            self.dropped += 1
            return False
        model, agent = report.get("model"), report.get("agent")
        numbers = [report.get(k, 0) for k in ("inference_ms", "tokens_in", "tokens_out")]
        if not (isinstance(model, str) and model and isinstance(agent, str) and agent) or not all(
            is_number(n) and math.isfinite(n) and n >= 0 for n in numbers
        ):
            self.dropped += 1
            return False
        found = self.stats.get((model, agent))
        if found is None:
            found = self.stats[model, agent] = ModelStats()
        found.add(now, report)
        return True

    def _by_model(self, now: float) -> dict[str, list[tuple[str, ModelStats]]]:
        grouped: dict[str, list[tuple[str, ModelStats]]] = {}
        for (model, agent), stats in sorted(self.stats.items()):
            stats.prune(now - self.window_s)
            grouped.setdefault(model, []).append((agent, stats))
        return grouped

    def _per_model(self, now: float) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """Each model's figures, and each of its agents' (with ``last_error``)."""
        oldest, window = now - self.window_s, self.window_s
        found = {}
        for model, pairs in self._by_model(now).items():
            agents = {
                agent: {**_figures([s], oldest, window), "last_error": s.last_error}
                for agent, s in pairs
            }
            found[model] = (_figures([s for _, s in pairs], oldest, window), agents)
        return found

    def metrics(self, now: float) -> dict[str, Any]:
        """``{"models": {model: {figures..., "agents": [addresses]}}, "agents": {address:
        {figures..., "models": [models], "last_error"}}}``: per model, and per agent."""
        oldest, window = now - self.window_s, self.window_s
        models: dict[str, Any] = {}
        for model, (figures, own) in self._per_model(now).items():
            models[model] = {**figures, "agents": sorted(own)}
        by_agent: dict[str, list[tuple[str, ModelStats]]] = {}
        for (model, agent), stats in sorted(self.stats.items()):
            by_agent.setdefault(agent, []).append((model, stats))
        agents: dict[str, Any] = {}
        for agent, pairs in by_agent.items():
            errors = [s.last_error for _, s in pairs if s.last_error is not None]
            agents[agent] = {
                **_figures([s for _, s in pairs], oldest, window),
                "models": [m for m, _ in pairs], "last_error": errors[-1] if errors else None,
            }  # fmt: skip
        return {"models": models, "agents": agents}

    def health(self, now: float) -> dict[str, Any]:
        """``{model: {status, reasons, error_rate, inference_p95_ms, reports}}``: see the
        module docstring for how the status is judged."""
        t = self.thresholds
        judged: dict[str, Any] = {}
        for model, (figures, agents) in self._per_model(now).items():
            rate, p95 = figures["error_rate"], figures["inference_p95_ms"]
            level, reasons = 0, []
            for status, max_rate, max_p95 in (
                (2, t.failing_error_rate, t.failing_p95_ms),
                (1, t.degraded_error_rate, t.degraded_p95_ms),
            ):
                if rate >= max_rate:
                    reasons.append(f"error rate {rate:.2f} >= {max_rate:g}")
                if p95 >= max_p95:
                    reasons.append(f"p95 inference {p95:g} ms >= {max_p95:g} ms")
                if reasons:
                    level = status
                    break
            judged[model] = {
                "status": HEALTH[level], "reasons": reasons, "error_rate": rate,
                "inference_p95_ms": p95, "reports": figures["reports"],
                "agents": sorted(agents),
            }  # fmt: skip
        return judged

    def gauges(self, now: float) -> dict[str, float]:
        """The figures as the monitor's gauges (``model.MEASURE{model=M}`` and
        ``model.MEASURE{agent=A,model=M}``), with ``model.health{model=M}``."""
        gauges: dict[str, float] = {}
        for model, (figures, agents) in self._per_model(now).items():
            for agent, own in agents.items():
                gauges.update(_named(own, agent=agent, model=model))
            gauges.update(_named(figures, model=model))
        for model, judged in self.health(now).items():
            gauges[metric_name("model.health", model=model)] = float(HEALTH.index(judged["status"]))
        gauges["monitor.model_reports_dropped"] = float(self.dropped)
        return gauges

    def families(self, gauges: dict[str, float]) -> Iterator[Any]:
        """The Prometheus families (see the module docstring), the gauges from the monitor's
        last sample ``gauges``; run on the HTTP server's thread, so it reads a copy of the
        stats table and changes nothing."""
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        labels = ["model", "agent"]
        reports = CounterMetricFamily("macp_model_reports", "Model reports", labels=labels)
        errors = CounterMetricFamily("macp_model_errors", "Model errors reported", labels=labels)
        tokens = CounterMetricFamily(
            "macp_model_tokens", "Model tokens", labels=[*labels, "direction"]
        )
        seconds = HistogramMetricFamily(
            "macp_model_inference_seconds", "Model inference time", labels=labels
        )
        for (model, agent), s in sorted(dict(self.stats).items()):
            reports.add_metric([model, agent], s.reports)
            errors.add_metric([model, agent], s.errors)
            tokens.add_metric([model, agent, "in"], s.tokens_in)
            tokens.add_metric([model, agent, "out"], s.tokens_out)
            buckets = [(str(bound) if bound != math.inf else "+Inf", count)
                       for bound, count in zip(BUCKETS_S, s.buckets, strict=True)]  # fmt: skip
            seconds.add_metric([model, agent], buckets, s.inference_sum_s)
        yield from (reports, errors, tokens, seconds)
        rate = GaugeMetricFamily("macp_model_error_rate", "Model error rate", labels=["model"])
        health = GaugeMetricFamily(
            "macp_model_health", "0 healthy, 1 degraded, 2 failing", labels=["model"]
        )
        for name, value in sorted(gauges.items()):
            measure, _, label = name.partition("{model=")
            if measure == "model.error_rate":
                rate.add_metric([label.rstrip("}")], value)
            elif measure == "model.health":
                health.add_metric([label.rstrip("}")], value)
        yield from (rate, health)


def _named(figures: dict[str, Any], **labels: str) -> Iterable[tuple[str, float]]:
    return [
        (metric_name(f"model.{k}", **labels), float(v)) for k, v in figures.items() if is_number(v)
    ]
