"""The monitor's model figures on their own, on an explicit clock: totals, the window's rates
and percentiles per model and per agent, health by the thresholds, the gauges rules watch."""

from __future__ import annotations

from typing import Any

import pytest

from macp.actors.model_metrics import ModelFigures, ModelThresholds
from macp.actors.model_report import report_body
from macp.errors import InvalidParams

WINDOW_S = 10.0


def _figures(**thresholds: float) -> ModelFigures:
    return ModelFigures(WINDOW_S, ModelThresholds(**thresholds))


def _report(agent: str, **figures: Any) -> Any:
    return report_body(agent, "llm", "2", figures)


def test_figures_are_totals_and_the_windows_rates_per_model_and_agent() -> None:
    models = _figures()
    models.add(0.0, _report("a@n", inference_ms=100, tokens_in=10, tokens_out=1))
    models.add(5.0, _report("a@n", inference_ms=300, tokens_in=30, error=True))
    models.add(6.0, _report("b@n", inference_ms=200, tokens_out=4, error="overloaded"))
    now = models.metrics(6.0)["models"]["llm@2"]
    assert {k: now[k] for k in ("reports", "errors", "tokens_in", "tokens_out")} == {
        "reports": 3, "errors": 2, "tokens_in": 40, "tokens_out": 5,
    }  # fmt: skip
    assert (now["error_rate"], now["inference_p50_ms"], now["inference_p99_ms"]) == (
        pytest.approx(2 / 3), 200.0, 300.0,
    )  # fmt: skip
    assert now["tokens_in_per_s"] == 40 / WINDOW_S
    assert now["agents"] == ["a@n", "b@n"]
    assert models.metrics(6.0)["agents"]["b@n"]["last_error"] == "overloaded"
    later = models.metrics(12.0)["models"]["llm@2"]  # the first report has left the window
    assert (later["reports"], later["error_rate"], later["tokens_in_per_s"]) == (3, 1.0, 3.0)
    a = models.metrics(12.0)["agents"]["a@n"]
    assert (later["inference_p50_ms"], a["reports_per_s"], a["models"]) == (200.0, 0.1, ["llm@2"])


def test_health_is_failing_then_degraded_then_healthy_by_the_thresholds() -> None:
    models = _figures(degraded_error_rate=0.25, failing_error_rate=0.5, degraded_p95_ms=250)
    models.add(0.0, _report("a@n", inference_ms=10, error=True))
    models.add(0.0, _report("a@n", inference_ms=10))
    assert models.health(0.0)["llm@2"]["status"] == "failing"
    models.add(0.0, _report("a@n", inference_ms=300))
    judged = models.health(0.0)["llm@2"]
    assert (judged["status"], judged["reasons"]) == (
        "degraded", ["error rate 0.33 >= 0.25", "p95 inference 300 ms >= 250 ms"],
    )  # fmt: skip
    assert models.health(20.0)["llm@2"] == {
        "status": "healthy", "reasons": [], "error_rate": 0.0, "inference_p95_ms": 0.0,
        "reports": 3, "agents": ["a@n"],
    }  # fmt: skip


def test_gauges_are_named_for_rules_per_model_and_per_agent() -> None:
    models = _figures()
    models.add(0.0, _report("a@n", tokens_in=5, error=True))
    gauges = models.gauges(0.0)
    assert gauges["model.error_rate{model=llm@2}"] == 1.0
    assert gauges["model.tokens_in{agent=a@n,model=llm@2}"] == 5.0
    assert gauges["model.health{model=llm@2}"] == 2.0
    assert not any("last_error" in name for name in gauges)


@pytest.mark.parametrize(
    "body",
    [None, [], {"model": "llm@2"}, {"agent": "a@n", "model": ""},
     {"agent": "a@n", "model": "m", "tokens_in": -3}, {"agent": "a@n", "model": "m",
                                                       "inference_ms": float("nan")}],
)  # fmt: skip
def test_a_malformed_report_from_the_network_is_dropped(body: object) -> None:
    models = _figures()
    assert models.add(0.0, body) is False
    assert models.metrics(0.0) == {"models": {}, "agents": {}}
    assert (models.dropped, models.gauges(0.0)) == (1, {"monitor.model_reports_dropped": 1.0})


def test_a_report_body_names_the_model_type_at_version() -> None:
    assert report_body("a@n", "clf", None, {"tokens_in": 2}) == {
        "agent": "a@n", "model": "clf", "tokens_in": 2, "error": False,
    }  # fmt: skip
    with pytest.raises(InvalidParams, match=r"^ctx\.report's inference_ms must be a number"):
        report_body("a@n", "clf", None, {"inference_ms": True})
