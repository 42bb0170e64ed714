"""The one check the control plane makes before it stores a value: what an envelope could
carry, or one sentence naming the part at fault."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack
import pytest

import macp
from macp._storable import MAX_DEPTH, is_number, scrub, storable

FIX = (
    "; use only dict/list/str/bytes/int/float/bool/None (e.g. a set as a sorted list, a "
    "datetime as an ISO 8601 string)"
)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        None, True, -(2**63), 2**64 - 1, 1.5, float("nan"), "text", b"\x00", bytearray(b"x"),
        [1, (2, 3)], {"a": {"b": [None]}}, {b"bytes": 1}, nested(MAX_DEPTH),
    ],
    ids=repr,
)  # fmt: skip
def test_what_an_envelope_can_carry_is_storable(value: Any) -> None:
    assert storable(value, "the value") == msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize(
    ("value", "fault"),
    [
        ({1, 2}, "value is a set"),
        ({"a": [1, {"b": dt.date(2026, 1, 1)}]}, "value['a'][1]['b'] is a date"),
        ({"a": object()}, "value['a'] is an object"),
        ([2**64], "value[0] is an integer of 65 bits (at most 64 fit)"),
        ([-(2**63) - 1], "value[0] is an integer of 64 bits (at most 64 fit)"),
        ({"k": {2: "two"}}, "value['k'] has the key 2 (an int); keys must be strings"),
        ({(1, 2): "pair"}, "value has the key (1, 2) (a tuple); keys must be strings"),
        ([msgpack.ExtType(3, b"")], "value[0] is an ExtType"),
        ({"t": msgpack.Timestamp(1, 0)}, "value['t'] is a Timestamp"),
        (
            nested(MAX_DEPTH + 1),
            f"value{'[0]' * 11}...{'[0]' * 12} is nested more than {MAX_DEPTH} maps and lists deep",
        ),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_a_value_that_cannot_be_stored_is_refused_naming_the_part_at_fault(
    value: Any, fault: str
) -> None:
    with pytest.raises(macp.InvalidParams) as raised:
        storable(value, "the test value")
    assert raised.value.message == f"the test value cannot be stored: {fault}{FIX}"


def test_a_value_that_nests_itself_is_refused_without_walking_forever() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(macp.InvalidParams, match=r"is nested more than 256 maps and lists deep"):
        storable({"loop": loop}, "the value")


def test_the_field_names_the_root_of_the_path() -> None:
    with pytest.raises(
        macp.InvalidParams, match=r"^task field 'body' cannot be stored: body\['x'\] is a set;"
    ):
        storable({"x": {1}}, "task field 'body'", "body")


@pytest.mark.parametrize(
    ("value", "number"),
    [(1, True), (1.5, True), (True, False), (float("inf"), False), (10**400, False), ("1", False)],
)
def test_is_number_is_a_finite_int_or_float_not_a_bool(value: object, number: bool) -> None:
    assert is_number(value) is number


def test_scrub_keeps_what_can_be_stored_and_nulls_the_rest() -> None:
    loop: list[Any] = []
    loop.append(loop)
    value = {"a": {1, 2}, 1: "int key", "b": [dt.date(2026, 1, 1), 2**70, "ok", (1, 2)], "c": loop}
    scrubbed = scrub(value)
    assert scrubbed["a"] is None
    assert scrubbed["b"] == [None, None, "ok", [1, 2]]
    assert set(scrubbed) == {"a", "b", "c"}
    assert storable(scrubbed, "the scrubbed value") == msgpack.packb(scrubbed, use_bin_type=True)
