"""The one check the control plane makes before it stores a value: what an envelope could
carry, or one sentence naming the part at fault."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack
import pytest

import macp
from macp._storable import MAX_DEPTH, is_number, scrub, storable

NATIVE = "use only dict (str keys)/list/str/bytes/int/float/bool/None"


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
        ({1, 2}, f"value: set is not msgpack-native; {NATIVE}, e.g. sorted(...) as a list"),
        (
            {"a": [1, {"b": dt.date(2026, 1, 1)}]},
            f"value['a'][1]['b']: date is not msgpack-native; {NATIVE}, e.g. .isoformat()",
        ),
        (
            {"a": object()},
            f"value['a']: object is not msgpack-native; {NATIVE}, e.g. a dict of its fields",
        ),
        (
            [2**64],
            (
                "value[0]: an int of 65 bits is out of msgpack's 64-bit range; send it as a str, "
                "e.g. str(...)"
            ),
        ),
        (
            [-(2**63) - 1],
            (
                "value[0]: an int of 64 bits is out of msgpack's 64-bit range; send it as a str, "
                "e.g. str(...)"
            ),
        ),
        (
            {"k": {2: "two"}},
            "value['k'][2]: a map key of type int is not allowed; use str keys, e.g. str(2)",
        ),
        (
            {(1, 2): "pair"},
            "value[(1, 2)]: a map key of type tuple is not allowed; use str keys, e.g. str((1, 2))",
        ),
        (
            [msgpack.ExtType(3, b"")],
            f"value[0]: ExtType (a msgpack extension) is not allowed; {NATIVE}",
        ),
        (
            {"t": msgpack.Timestamp(1, 0)},
            f"value['t']: Timestamp (a msgpack extension) is not allowed; {NATIVE}",
        ),
        (
            nested(MAX_DEPTH + 1),
            (
                f"value{'[0]' * 11}...{'[0]' * 12}: nested deeper than {MAX_DEPTH} maps and "
                "lists; flatten it"
            ),
        ),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_a_value_that_cannot_be_stored_is_refused_naming_the_part_at_fault(
    value: Any, fault: str
) -> None:
    with pytest.raises(macp.InvalidParams) as raised:
        storable(value, "the test value")
    assert raised.value.message == f"the test value cannot be stored: {fault}"


def test_a_value_that_nests_itself_is_refused_without_walking_forever() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(macp.InvalidParams, match=r"nested deeper than 256 maps and lists"):
        storable({"loop": loop}, "the value")


def test_the_field_names_the_root_of_the_path() -> None:
    with pytest.raises(
        macp.InvalidParams,
        match=r"^task field 'body' cannot be stored: body\['x'\]: set is not msgpack-native;",
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
