"""Settings refuse bad values naming the field; tune_gc changes the collector as it says."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from macp import ConfigError, Settings, tune_gc


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("heartbeat_interval_s", 0, ("settings.heartbeat_interval_s must be a positive number, "
         "not 0; use a value such as 1.0")),
        ("ask_timeout_s", "5", ("settings.ask_timeout_s must be a positive number, not '5'; "
         "use a value such as 5.0")),
        ("heartbeat_misses", 2.5, ("settings.heartbeat_misses must be a positive whole number, "
         "not 2.5; use a value such as 3")),
        ("send_hwm", True, ("settings.send_hwm must be a positive whole number, not True; "
         "use a value such as 100000")),
        ("abandon_grace_s", 0, ("settings.abandon_grace_s must be a positive number, not 0; "
         "use a value such as 5.0")),
        ("strict", "yes", "settings.strict must be true or false, not 'yes'"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**{field: value})  # type: ignore[arg-type]
    assert caught.value.message == message


def test_whole_and_fractional_values_of_the_right_kind_are_kept() -> None:
    settings = Settings(heartbeat_interval_s=1, heartbeat_misses=5, acceptable_pause_s=0.5)
    assert (settings.heartbeat_interval_s, settings.heartbeat_misses) == (1, 5)
    assert settings.acceptable_pause_s == 0.5


def test_tune_gc_freezes_what_exists_and_raises_the_first_threshold() -> None:
    # In a process of its own: the collector's settings are process-wide.
    script = textwrap.dedent("""\
        import gc, macp
        before = gc.get_threshold()
        macp.tune_gc()
        print(before, gc.get_threshold(), gc.get_freeze_count() > 1000)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "(700, 10, 10) (50000, 20, 100) True\n"


def test_tune_gc_refuses_a_threshold_that_is_not_a_whole_number() -> None:
    with pytest.raises(ConfigError, match=r"^tune_gc's first_threshold must be a whole number"):
        tune_gc(0.5)  # type: ignore[arg-type]
