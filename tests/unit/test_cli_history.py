"""``macp tasks --since``: a duration back from now, an ISO time (UTC unless it says), or unix
seconds; anything else is refused."""

from __future__ import annotations

import pytest

from macp.cli._history import parse_since

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90), ("10m", NOW - 600), ("2h", NOW - 7200), ("1d", NOW - 86400),
        ("1.5h", NOW - 5400), ("1700000000", 1_700_000_000.0), ("1700000000.25", 1_700_000_000.25),
        ("2027-01-15T08:00:00Z", NOW), ("2027-01-15T08:00:00", NOW),
        ("2027-01-15T08:00:00+02:00", NOW - 7200),
    ],
)  # fmt: skip
def test_since_reads_a_duration_an_iso_time_or_unix_seconds(text: str, expected: float) -> None:
    assert parse_since(text, now_s=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "10x", "m10", ""])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"Invalid isoformat string"):
        parse_since(text, now_s=NOW)
