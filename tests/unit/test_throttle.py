"""The log throttle: a flood of events per key costs a bounded number of lines."""

from __future__ import annotations

from macp.log import Throttle


def test_a_key_logs_its_burst_then_at_its_rate() -> None:
    throttle = Throttle(rate_per_s=2.0, burst=3)
    admitted = [throttle.admit("p", now=10.0) for _ in range(100)]
    assert admitted[:3] == [0, 0, 0]
    assert admitted[3:] == [None] * 97
    # half a second later one token is back: the line reports the 97 it could not log
    assert throttle.admit("p", now=10.5) == 97
    assert throttle.admit("p", now=10.5) is None


def test_keys_are_throttled_apart() -> None:
    throttle = Throttle(rate_per_s=1.0, burst=1)
    assert throttle.admit("a", now=0.0) == 0
    assert throttle.admit("a", now=0.0) is None
    assert throttle.admit("b", now=0.0) == 0


def test_quiet_keys_report_what_they_suppressed_once() -> None:
    throttle = Throttle(rate_per_s=2.0, burst=2)
    for _ in range(10):
        throttle.admit("p", now=0.0)
    assert throttle.quiet(now=0.4) == []  # not quiet for the time of one token yet
    assert throttle.quiet(now=0.5) == [("p", 8)]
    assert throttle.quiet(now=3.0) == []
    assert throttle.admit("p", now=3.0) == 0


def test_many_made_up_keys_share_one() -> None:
    throttle = Throttle(rate_per_s=1.0, burst=1, max_keys=4)
    lines = sum(throttle.admit(f"peer{i}", now=0.0) is not None for i in range(1000))
    assert lines == 4  # three keys, then "*" once for the rest
