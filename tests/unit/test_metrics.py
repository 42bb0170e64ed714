"""Alert rules and outcome statistics, driven with explicit times."""

from __future__ import annotations

import pytest

import macp
from macp.actors.metrics import History, Outcomes, Rule, metric_name, percentile


def _rule(**kw: object) -> Rule:
    return Rule.parse({"name": "hot", "metric": "m", "op": ">", "threshold": 10, **kw})


def test_a_rule_fires_once_after_its_duration_and_clears() -> None:
    rule = _rule(for_s=2, cooldown_s=0)
    assert rule.evaluate(11, 0.0) is None  # holds, not for long enough
    assert rule.evaluate(11, 1.9) is None
    assert rule.evaluate(11, 2.0) == "firing"
    assert rule.evaluate(50, 3.0) is None  # still firing: not again
    assert rule.evaluate(5, 4.0) == "resolved"
    assert rule.evaluate(5, 5.0) is None


def test_a_condition_that_breaks_restarts_the_duration() -> None:
    rule = _rule(for_s=2, cooldown_s=0)
    rule.evaluate(11, 0.0)
    rule.evaluate(9, 1.0)
    assert rule.evaluate(11, 2.5) is None
    assert rule.evaluate(11, 4.5) == "firing"


def test_a_rule_does_not_fire_again_within_its_cooldown() -> None:
    rule = _rule(cooldown_s=10)
    assert rule.evaluate(11, 0.0) == "firing"
    assert rule.evaluate(1, 1.0) == "resolved"
    assert rule.evaluate(11, 2.0) is None  # within the cooldown
    assert rule.evaluate(11, 9.9) is None
    assert rule.evaluate(11, 10.0) == "firing"


def test_a_missing_metric_does_not_hold() -> None:
    rule = _rule()
    assert rule.evaluate(None, 0.0) is None


def test_a_rule_can_be_written_as_an_expression() -> None:
    rule = Rule.parse({"name": "err", "expr": "tasks.error_rate{type=x} >= 0.5 for 10s"})
    assert (rule.metric, rule.op, rule.threshold, rule.for_s) == (
        "tasks.error_rate{type=x}", ">=", 0.5, 10.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "r", "expr": "cpu is high"}, "'expr' must read 'METRIC OP THRESHOLD"),
        ({"name": "r", "metric": "m", "op": "~", "threshold": 1}, "'op' must be one of"),
        ({"name": "r", "metric": "m", "op": ">", "threshold": "x"}, "'threshold' must be a number"),
        ({"metric": "m"}, "an alert rule: 'name' is required"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(macp.InvalidParams, match=message):
        Rule.parse(raw)


def test_outcomes_give_rates_over_the_window_and_percentiles() -> None:
    stats = Outcomes(window_s=10)
    for i in range(10):
        stats.add(float(i), ok=i % 5 != 0, duration_s=(i + 1) / 100)
    gauges = stats.gauges(9.0)
    assert gauges["throughput"] == 1.0
    assert gauges["error_rate"] == 0.2
    assert gauges["duration_p50_ms"] == pytest.approx(50.0)
    assert gauges["duration_p99_ms"] == pytest.approx(100.0)
    assert stats.gauges(25.0)["throughput"] == 0.0  # everything left the window


def test_history_keeps_a_bounded_series_per_metric() -> None:
    history = History(size=3)
    for ts in range(5):
        history.record(ts, {"a": float(ts)})
    assert history.since("a", 0) == [[2, 2.0], [3, 3.0], [4, 4.0]]
    assert history.since("a", 4) == [[4, 4.0]]
    assert history.since("b", 0) == []


def test_names_and_percentiles() -> None:
    assert metric_name("tasks.throughput", type="x") == "tasks.throughput{type=x}"
    assert metric_name("coordinator.queue_depth") == "coordinator.queue_depth"
    assert percentile([], 0.5) == 0.0
    assert percentile([3, 1, 2], 0.5) == 2
