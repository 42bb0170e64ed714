"""The envelope codec: valid envelopes round-trip; anything else raises EnvelopeError."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macp import Envelope, EnvelopeError, InvalidParams, Kind, Priority, decode, encode
from macp.envelope import VERSION

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=20)
addresses = st.builds(lambda n, h: f"{n}@{h}", names, names)
wire = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.binary(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
envelopes = st.builds(
    Envelope,
    v=st.just(VERSION),
    id=st.text(min_size=1, max_size=40),
    kind=st.sampled_from([int(k) for k in Kind]),
    type=st.text(min_size=1, max_size=40),
    src=addresses,
    dst=addresses | names,
    corr=st.none() | st.text(min_size=1, max_size=40),
    prio=st.sampled_from([int(p) for p in Priority]),
    ts=st.integers(min_value=0, max_value=2**53),
    deadline=st.none() | st.integers(min_value=0, max_value=2**53),
    chain=st.lists(addresses, max_size=5).map(tuple),
    body=wire,
)


def _valid_list() -> list[object]:
    return list(Envelope.new(Kind.ASK, "summarize", "a@n1", "b@n2", {"text": "x" * 64}))


@given(envelopes)
def test_every_valid_envelope_round_trips(env: Envelope) -> None:
    assert decode(encode(env)) == env


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_raise_envelope_error_and_nothing_else(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(data)


@given(envelopes, st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_truncated_frames_raise_envelope_error(env: Envelope, data: st.DataObject) -> None:
    frame = encode(env)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    with pytest.raises(EnvelopeError):
        decode(frame[:cut])


_WRONG: dict[int, list[object]] = {
    1: ["", 7, None, b"id"],
    2: [99, -1, "ask", None, True],
    3: ["", 3, None],
    4: [5, None, b"a@b"],
    5: [5, None],
    6: [5, b"x"],
    7: [-1, 4, "high", None, True],
    8: ["now", None, 1.5],
    9: ["later", 1.5],
    10: ["a@b", [1], None, ["x"] * 65],
}


@pytest.mark.parametrize(
    ("index", "value"), [(i, v) for i, values in _WRONG.items() for v in values]
)
def test_a_field_of_the_wrong_type_raises_envelope_error(index: int, value: object) -> None:
    fields = _valid_list()
    fields[index] = value
    with pytest.raises(EnvelopeError, match="field"):
        decode(msgpack.packb(fields))


@pytest.mark.parametrize("version", [0, 2, 99, "1", None, True])
def test_an_unknown_version_is_refused(version: object) -> None:
    fields = _valid_list()
    fields[0] = version
    with pytest.raises(EnvelopeError, match="unsupported wire version"):
        decode(msgpack.packb(fields))


@given(
    st.integers(min_value=-(2**63), max_value=2**64 - 1).filter(
        lambda k: k not in {int(k) for k in Kind}
    )
)
def test_an_unknown_kind_is_refused(kind: int) -> None:
    fields = _valid_list()
    fields[2] = kind
    with pytest.raises(EnvelopeError, match="'kind'"):
        decode(msgpack.packb(fields))


@pytest.mark.parametrize("frame", [msgpack.packb(x) for x in [{}, "env", 1, [], [1], [1] * 11]])
def test_wrong_shapes_are_refused(frame: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(frame)


def test_an_oversized_frame_is_refused_before_decoding() -> None:
    env = Envelope.new(Kind.TELL, "t", "a@n", "b@n", "x" * 2000)
    with pytest.raises(EnvelopeError, match="exceeds the limit of 1000"):
        decode(encode(env), max_bytes=1000)


def test_an_extension_type_is_refused() -> None:
    fields = _valid_list()
    fields[11] = msgpack.ExtType(5, b"xyz")
    with pytest.raises(EnvelopeError, match="extension type 5"):
        decode(msgpack.packb(fields))


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(EnvelopeError, match="ExtraData"):
        decode(encode(Envelope.new(Kind.TELL, "t", "a@n", "b@n")) + b"\x00")


@pytest.mark.parametrize("body", [{1, 2}, object(), {"k": {1}}, 2**65])
def test_a_body_msgpack_cannot_carry_raises_invalid_params(body: object) -> None:
    env = Envelope.new(Kind.TELL, "t", "a@n", "b@n", body)  # type: ignore[arg-type]
    with pytest.raises(InvalidParams, match="not msgpack-native"):
        encode(env)


def test_reply_and_error_answer_the_original() -> None:
    ask = Envelope.new(Kind.ASK, "t", "a@n1", "b@n2", {"q": 1}, prio=Priority.HIGH)
    reply = ask.reply({"a": 2})
    assert (reply.kind, reply.corr, reply.src, reply.dst, reply.prio) == (
        Kind.REPLY, ask.id, "b@n2", "a@n1", Priority.HIGH,
    )  # fmt: skip
    error = ask.error(ValueError("no"))
    assert error.kind == Kind.ERROR
    assert error.body == {
        "code": -32001,
        "error": "AgentError",
        "message": "ValueError: no",
        "data": {"remote_type": "ValueError", "remote_message": "no"},
    }
