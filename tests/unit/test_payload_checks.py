"""The payload rule's two checks: the fast bound, which vouches for plain values, and the
thorough one, which decides (and explains) the rest."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import macp
from macp.payload import MAX_DEPTH, UNUSUAL, bound, fit

PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(PLAIN)
def test_the_bound_of_a_plain_value_is_at_least_its_packed_size(value: Any) -> None:
    size = len(msgpack.packb(value))
    assert size <= bound(value)
    assert fit(value, "body") == (value, size)


@given(PLAIN)
def test_a_value_holding_a_tuple_is_sent_as_what_msgpack_reads_back(value: Any) -> None:
    wrapped = {"t": (value, [value])}
    with pytest.raises(UNUSUAL):
        bound(wrapped)
    sent, size = fit(wrapped, "body")
    assert isinstance(sent, dict)
    assert type(sent["t"]) is list
    assert msgpack.packb(sent) == msgpack.packb(wrapped)  # (NaN is not equal to itself)
    assert size == len(msgpack.packb(wrapped))


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": [value]}
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": [1, {2: "b"}]}, r"^body\['a'\]\[1\]\[2\]: a map key of type int is not allowed"),
        ({"s": {1}}, r"^body\['s'\]: set is not msgpack-native"),
        ([dt.date(2026, 1, 1)], r"^body\[0\]: date is not msgpack-native"),
        ({"big": -(2**63) - 1}, r"^body\['big'\]: an int of 64 bits is out of msgpack's"),
        ("\udc80", r"^body: str holds '\\udc80', which UTF-8 cannot encode"),
        ({"\ud800": 1}, r"^body\['\\ud800'\]: the key str holds"),
        ([msgpack.ExtType(1, b"")], r"^body\[0\]: ExtType \(a msgpack extension\)"),
        (_nested(MAX_DEPTH), r"\.\.\..*: nested deeper than 256 maps and lists; flatten it$"),
    ],
    ids=["int key", "set", "date", "int", "surrogate", "surrogate key", "ext", "deep"],
)
def test_what_cannot_cross_is_named_by_its_path(value: Any, message: str) -> None:
    with pytest.raises(UNUSUAL):
        bound(value)
    with pytest.raises(macp.InvalidParams, match=message):
        fit(value, "body")


def test_the_deepest_value_allowed_crosses() -> None:
    value = _nested(MAX_DEPTH // 2 - 1)  # a map and a list a level: 254 levels
    assert fit(value, "body") == (value, len(msgpack.packb(value)))
