"""Malformed frames from a raw ZeroMQ peer: each is counted once, logged with the peer's
identity, answered where it names a sender, and none crashes or stalls the node."""

from __future__ import annotations

import itertools
import json
import random
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgpack
import pytest
import zmq
from agents import Echo
from hypothesis import given, settings
from hypothesis import strategies as st

import macp
from macp import Envelope, Kind, Priority, encode, handler
from macp.envelope import VERSION, now_ms
from macp.errors import EnvelopeError
from macp.payload import HEADER_ROOM
from macp.testing import Probe, ProbedAgent, wait_until
from macp.transport.frames import BATCH_BYTES, pack_frames, unpack_frame

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.fault

SEED: Final = 20_240_611
LIMIT: Final = 65_536  # --max-message-bytes of the target node
FRAME_LIMIT: Final = LIMIT + HEADER_ROOM  # a payload of LIMIT, and the rest of its envelope
CLIENT: Final = "$client@~fuzzer"  # a client's address: answers come back to the raw socket
UNSET: Final = object()
FIELDS: Final = Envelope._fields


class Raw:
    """A raw DEALER (real pyzmq, no macp) and what it has received, decoded."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self.received: list[list[Any]] = []

    def send(self, *parts: bytes) -> None:
        self.sock.send_multipart(list(parts))

    def drain(self, timeout_ms: int = 0) -> None:
        """Decode whatever has arrived (a frame is an envelope or an array of envelopes)."""
        while self.sock.poll(timeout_ms):
            timeout_ms = 0
            self.received.extend(_envelopes(self.sock.recv()))

    def answer_to(self, msg_id: str, timeout_s: float = 10.0) -> list[Any]:
        """Wait for the reply or error whose ``corr`` is ``msg_id``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for env in self.received:
                if env[6] == msg_id:
                    return env
            self.drain(timeout_ms=100)
        raise AssertionError(f"no answer to {msg_id} within {timeout_s} s")

    def of_kind(self, kind: Kind) -> list[list[Any]]:
        return [env for env in self.received if env[2] == kind]


@pytest.fixture
def raw(zmq_socket: Callable[[int], zmq.Socket[bytes]]) -> Callable[[str, bytes], Raw]:
    """Connect raw DEALERs with a given identity (closed when the test ends)."""

    def connect(address: str, identity: bytes) -> Raw:
        sock = zmq_socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.connect(address)
        return Raw(sock)

    return connect


def _envelopes(frame: bytes) -> list[list[Any]]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(frame)
    found: list[list[Any]] = []
    for obj in unpacker:
        found.extend(obj if obj and type(obj[0]) is list else [obj])
    return found


def _ping(address: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "macp", "node", "ping", address, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    info: dict[str, Any] = json.loads(result.stdout)
    return info


# -- the generator of malformed messages ------------------------------------------------------


class Malformed(NamedTuple):
    """One message from the DEALER (``parts`` are its frames) that the node must reject.

    ``answered`` is the id an error envelope must answer: set when the object that breaks the
    frame is an array that still carries a string id (index 1) and a string src (index 4).
    """

    kind: str
    parts: list[bytes]
    answered: str | None = None


# Values of the wrong type (or out of range) for each field, by position.
_WRONG: Final[dict[int, list[Any]]] = {
    1: [7, None, b"id", "", "i" * 129, ["id"], 1.5],
    2: ["ask", None, 1.0, True, [1], 99.0],
    3: ["", 3, None, b"echo", "t" * 257, {"t": 1}],
    4: [None, 4, b"$client@~fuzzer", "s" * 513, {"src": "x"}],
    5: [None, 5, b"echo@target", "d" * 513, ["echo@target"]],
    6: [6, b"corr", "c" * 129, [None], True],
    7: [4, -1, "1", None, 1.5, True, 2**40],
    8: [None, "now", 1.5, [1], True],
    9: ["later", 1.5, [2], True, {"ms": 1}],
    10: ["a@b", [1], ["a@b"] * 65, {"a": "b"}, None, [None], ["a" * 513]],
}


def _answered(obj: list[Any]) -> str | None:
    if len(obj) > 4 and type(obj[1]) is str and type(obj[4]) is str:
        return obj[1][:128]
    return None


class Fuzzer:
    """Malformed messages from a seeded generator: the same seed, the same messages."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids = itertools.count()

    def fields(self, body: Any = UNSET) -> list[Any]:
        """A valid envelope as a list (an ask to echo@target that answers the raw socket)."""
        return [
            VERSION, f"fz-{next(self.ids)}", int(Kind.ASK), "echo", CLIENT, "echo@target",
            None, int(Priority.MEDIUM), now_ms(), None, [],
            {"n": self.rng.random()} if body is UNSET else body,
        ]  # fmt: skip

    def harmless(self) -> bytes:
        """A valid reply nobody waits for (the node counts it late), to put before garbage."""
        env = Envelope.new(Kind.REPLY, "echo", CLIENT, "nobody@target", 1, corr="nobody")
        return encode(env)

    def random_bytes(self, top: int = 4096) -> bytes:
        if self.rng.random() < 0.05:
            return b""
        size = self.rng.choice([self.rng.randint(1, 16), self.rng.randint(1, 256)])
        size = self.rng.choice([size, self.rng.randint(1, top)])
        return self.rng.randbytes(size)

    def value(self, depth: int = 0) -> Any:
        """A msgpack-native value, not a list (at the top level)."""
        choices: list[Callable[[], Any]] = [
            lambda: self.rng.randint(-(2**63), 2**64 - 1),
            lambda: self.rng.randint(-32, 127),
            lambda: self.rng.random() * 1e6,
            lambda: "".join(self.rng.choices("abcé@$~\u2603", k=self.rng.randint(0, 40))),
            lambda: self.rng.randbytes(self.rng.randint(0, 40)),
            lambda: None,
            lambda: self.rng.random() < 0.5,
        ]
        if depth < 3:
            choices.append(
                lambda: {f"k{i}": self.value(depth + 1) for i in range(self.rng.randint(0, 4))}
            )
        return self.rng.choice(choices)()

    def generate(self) -> Iterator[Malformed]:
        """Every kind of malformed message, shuffled, a few thousand in all."""
        plan: list[tuple[int, Callable[[], Malformed]]] = [
            (700, self.random_frame),
            (250, self.not_an_array),
            (250, self.wrong_field_count),
            (200, self.wrong_version),
            (200, self.unknown_kind),
            (800, self.wrong_field_type),
            (250, self.truncated),
            (200, self.trailing_garbage),
            (24, self.oversized),
            (150, self.ext_type),
            (100, self.deep_body),
            (100, self.bad_strings),
            (300, self.multipart),
            (100, self.batch),
        ]
        makers = [make for count, make in plan for _ in range(count)]
        self.rng.shuffle(makers)
        for make in makers:
            yield make()

    def random_frame(self) -> Malformed:
        return Malformed("random bytes", [self.random_bytes()])

    def not_an_array(self) -> Malformed:
        data = msgpack.packb(self.value())
        if self.rng.random() < 0.2:  # several objects back to back
            data += msgpack.packb(self.value())
        return Malformed("not an array", [data])

    def wrong_field_count(self) -> Malformed:
        obj = self.fields()
        size = self.rng.choice([n for n in range(41) if n != len(obj)])
        obj = obj[:size] + [self.value() for _ in range(size - len(obj))]
        return Malformed("field count", [msgpack.packb(obj)], _answered(obj))

    def wrong_version(self) -> Malformed:
        obj = self.fields()
        obj[0] = self.rng.choice([0, 2, "1", True, 1.0, None, -1, 2**64 - 1, "v1"])
        return Malformed("version", [msgpack.packb(obj)], _answered(obj))

    def unknown_kind(self) -> Malformed:
        obj = self.fields()
        obj[2] = self.rng.choice([7, 8, 99, 255, -1, 2**33])
        return Malformed("kind", [msgpack.packb(obj)], _answered(obj))

    def wrong_field_type(self) -> Malformed:
        obj = self.fields()
        index = self.rng.choice(list(_WRONG))
        obj[index] = self.rng.choice(_WRONG[index])
        return Malformed(f"field {index}", [msgpack.packb(obj)], _answered(obj))

    def truncated(self) -> Malformed:
        data = msgpack.packb(self.fields())
        return Malformed("truncated", [data[: self.rng.randint(1, len(data) - 1)]])

    def trailing_garbage(self) -> Malformed:
        """A valid envelope, then bytes that are not one."""
        bad = self.fields()
        bad[2] = 99
        garbage = self.rng.choice(
            [
                b"\xc1",  # a byte msgpack never uses
                self.rng.randbytes(self.rng.randint(1, 64)),
                msgpack.packb(42),
                msgpack.packb({"x": 1}),
                msgpack.packb(bad),
            ]
        )
        return Malformed("trailing garbage", [self.harmless() + garbage])

    def oversized(self) -> Malformed:
        size = self.rng.randint(FRAME_LIMIT + 1, FRAME_LIMIT + 4096)
        if self.rng.random() < 0.5:  # an envelope whose only fault is its size
            data = msgpack.packb(self.fields(body="x" * size))[:size]
        else:
            data = self.rng.randbytes(size)
        return Malformed("oversized", [data])

    def ext_type(self) -> Malformed:
        code = self.rng.randint(-128, 127)  # -1 is a timestamp, which msgpack decodes itself
        data = self.rng.randbytes(self.rng.randint(0, 20))
        ext = b"\xc7" + bytes([len(data)]) + code.to_bytes(1, "big", signed=True) + data
        packed = [msgpack.packb(field) for field in self.fields()]
        where = self.rng.randrange(4)
        if where == 0:
            return Malformed("ext type", [ext])
        if where == 1:
            packed[11] = b"\x81" + msgpack.packb("payload") + b"\x92\x01" + ext
        elif where == 2:
            packed[1] = ext
        else:
            packed[10] = b"\x92" + msgpack.packb("a@b") + ext
        return Malformed("ext type", [b"\x9c" + b"".join(packed)])

    def deep_body(self) -> Malformed:
        obj = self.fields(body=None)
        nest = self.rng.choice([b"\x91", b"\x81\xa1k"])  # [[[...]]] or {"k": {"k": ...}}
        if self.rng.random() < 0.3:  # shallow enough to unpack, but of an unknown kind
            obj[2] = 99
            depth, answered = 900, obj[1]
        else:  # deeper than msgpack unpacks (1024)
            depth, answered = self.rng.randint(1024, 5000), None
        head = b"\x9c" + b"".join(msgpack.packb(field) for field in obj[:11])
        return Malformed("deep body", [head + nest * depth + b"\xc0"], answered)

    def bad_strings(self) -> Malformed:
        packed = [msgpack.packb(field) for field in self.fields()]
        if self.rng.random() < 0.5:
            packed[1] = b"\xa3\xff\xfe\xfd"  # an id that is not UTF-8
        else:
            packed[11] = msgpack.packb({1: "one"})  # a map key that is not a string
        return Malformed("bad strings", [b"\x9c" + b"".join(packed)])

    def batch(self) -> Malformed:
        """A frame of two envelopes (a msgpack array of them), the second one malformed."""
        bad = self.wrong_field_type().parts[0]
        return Malformed("batch", [b"\x92" + self.harmless() + bad])

    def multipart(self) -> Malformed:
        """2 or 3 frames from the DEALER: 3 or 4 at the ROUTER, with the identity."""
        count = self.rng.choice([2, 3])
        parts = [
            self.rng.choice([msgpack.packb(self.fields()), b"", self.random_bytes(64)])
            for _ in range(count)
        ]
        return Malformed(f"{count + 1} frames", parts)


# -- the fuzzing run --------------------------------------------------------------------------


def test_thousands_of_malformed_frames_are_counted_answered_and_survived(
    procs: Callable[..., NodeProcess], raw: Callable[[str, bytes], Raw]
) -> None:
    target = procs("target", "--agent", "echo=agents:Echo", "--max-message-bytes", str(LIMIT))
    assert target.address is not None
    fuzzer = raw(target.address, b"fuzzer")
    messages = list(Fuzzer(SEED).generate())
    for message in messages:
        fuzzer.send(*message.parts)
        fuzzer.drain()

    probe = Fuzzer(SEED + 1).fields()
    probe[1], probe[2] = "probe-kind-99", 99
    fuzzer.send(msgpack.packb(probe))
    sent = len(messages) + 1

    ask = Envelope.new(Kind.ASK, "echo", CLIENT, "echo@target", "still there?")
    fuzzer.send(encode(ask))
    reply = fuzzer.answer_to(ask.id)  # FIFO: every frame before it has been handled
    assert (reply[2], reply[11]) == (
        Kind.REPLY,
        {"echo": "still there?", "sender": CLIENT, "me": "echo@target"},
    )
    assert fuzzer.of_kind(Kind.REPLY) == [reply]  # no malformed ask reached the agent

    error = fuzzer.answer_to("probe-kind-99")
    assert (error[0], error[2], error[3], error[4], error[5]) == (
        VERSION,
        Kind.ERROR,
        "error",
        "$node@target",
        CLIENT,
    )
    assert error[11] == {
        "code": -32600,
        "error": "EnvelopeError",
        "message": "field 'kind' has an invalid value 99",
        "data": {},
    }
    errors = fuzzer.of_kind(Kind.ERROR)
    assert {e[11]["code"] for e in errors} == {-32600}
    answered = {m.answered for m in messages if m.answered is not None}
    assert len(answered) > 1000
    assert answered - {e[6] for e in errors} == set()

    counters: dict[str, int] = {}

    def counted() -> bool:
        counters.update(_ping(target.address or "")["counters"])
        return counters.get("bad_frames", 0) >= sent

    wait_until(counted, 30.0, f"the node did not count {sent} bad frames")
    assert counters["bad_frames"] == sent

    # Logged at a bounded rate: a few lines, each saying how many it stood for, and a last
    # count once the peer has gone quiet, so that every bad frame is accounted for.
    def accounted() -> int:
        lines = target.logs("envelope.rejected") + target.logs("transport.log_suppressed")
        return sum(int(r.get("suppressed", 0)) + (r["event"] == "envelope.rejected") for r in lines)

    wait_until(lambda: accounted() >= sent, 20.0, "the log does not account for every frame")
    rejected = target.logs("envelope.rejected")
    assert accounted() == sent
    assert len(rejected) < 60, f"{len(rejected)} log lines for {sent} bad frames"
    assert {r["peer"] for r in rejected} == {"fuzzer"}
    assert {r["peer"] for r in target.logs("transport.log_suppressed")} == {"fuzzer"}
    assert target.running()


def test_every_kind_of_malformed_frame_is_refused_with_its_reason() -> None:
    """The reasons the node gives (in its answers and its first log lines), frame by frame."""
    reasons: set[str] = set()
    for message in Fuzzer(SEED).generate():
        if len(message.parts) != 1:
            continue  # a multipart shape is the socket loop's to refuse
        try:
            _, errors = unpack_frame(message.parts[0], FRAME_LIMIT)
        except EnvelopeError as e:
            reasons.add(e.message)
        else:
            assert errors, message.kind
            reasons.update(e.message for e in errors)
    for expected in [
        r"empty frame",
        rf"frame of \d+ bytes exceeds the limit of {FRAME_LIMIT}",
        r"an envelope is a msgpack array, not (int|float|str|bytes|dict|NoneType|bool)",
        r"an envelope has 12 fields, this one has \d+",
        r"unsupported wire version .+ \(this node speaks 1\)",
        *(rf"field '{f}' has an invalid value .+" for f in FIELDS[1:11]),
        r"extension type -?\d+ is not allowed in an envelope",
        r".*msgpack.*\(StackError\b.*\)",  # nested deeper than msgpack unpacks
        r".*msgpack.*\(UnicodeDecodeError\b.*\)",
        r".*msgpack.*\(ValueError\b.*\)",  # a map key that is not a string
    ]:
        assert any(re.fullmatch(expected, reason) for reason in reasons), expected


# -- in process: the frames a node packs, unpacked by another ------------------------------

_BODIES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


class Collector(ProbedAgent):
    @handler("collect")
    def collect(self, body: macp.Wire) -> None:
        self.probe.record(body)


def test_frames_packed_by_a_node_are_unpacked_into_the_same_envelopes_in_order(
    probe: Probe, make_node: Callable[..., Node], raw: Callable[[str, bytes], Raw]
) -> None:
    node = make_node("local", listen="tcp://127.0.0.1:0")
    node.spawn(Collector, "collector", probe=probe)
    assert node.address is not None
    assert node.router is not None
    router = node.router
    sock = raw(node.address, b"prop")
    sentinels = itertools.count()
    packer = msgpack.Packer()

    @settings(max_examples=60, deadline=None)
    @given(
        bodies=st.lists(_BODIES, min_size=1, max_size=12),
        batch_bytes=st.sampled_from([1, 200, 1000, BATCH_BYTES]),
    )
    def check(bodies: list[macp.Wire], batch_bytes: int) -> None:
        probe.clear()
        envs = [_tell_env(body, "prop", "collector@local") for body in bodies]
        frames, refused = pack_frames(envs, packer, batch_bytes)
        assert refused == []
        for frame in frames:
            sock.send(frame)
        sentinel = f"sentinel-{next(sentinels)}"
        sock.send(_tell(sentinel, "prop", "collector@local"))
        events = probe.wait_for(lambda ev: bool(ev) and ev[-1] == sentinel)
        assert events == [*bodies, sentinel]

    check()
    assert router.counters["bad_frames"] == 0


def _tell_env(body: macp.Wire, client: str, dst: str) -> Envelope:
    return Envelope.new(Kind.TELL, "collect", f"$client@~{client}", dst, body)


def _tell(body: macp.Wire, client: str, dst: str) -> bytes:
    return encode(_tell_env(body, client, dst))


# -- hostile frames, one at a time ------------------------------------------------------------


def test_an_envelope_carrying_a_msgpack_timestamp_is_refused_like_any_extension_type(
    make_node: Callable[..., Node], raw: Callable[[str, bytes], Raw]
) -> None:
    node = make_node("local", listen="tcp://127.0.0.1:0")
    node.spawn(Echo, "echo")
    assert node.address is not None
    assert node.router is not None
    sock = raw(node.address, b"stamper")
    stamped = list(Envelope.new(Kind.ASK, "echo", "$client@~stamper", "echo@local"))
    stamped[11] = msgpack.Timestamp(1, 0)  # ext type -1: msgpack decodes it without ext_hook
    sock.send(msgpack.packb(stamped))
    probe = Envelope.new(Kind.ASK, "echo", "$client@~stamper", "echo@local", "probe")
    sock.send(encode(probe))
    reply = sock.answer_to(probe.id)  # FIFO at echo: the stamped ask would be answered first
    assert sock.of_kind(Kind.REPLY) == [reply]
    assert node.router.counters["bad_frames"] == 1


def test_garbage_after_a_valid_ask_is_never_blamed_on_the_ask(
    make_node: Callable[..., Node], raw: Callable[[str, bytes], Raw]
) -> None:
    node = make_node("local", listen="tcp://127.0.0.1:0")
    node.spawn(Echo, "echo")
    assert node.address is not None
    assert node.router is not None
    sock = raw(node.address, b"sloppy")
    asks = [Envelope.new(Kind.ASK, "echo", "$client@~sloppy", "echo@local", i) for i in range(3)]
    for ask, garbage in zip(asks, [b"\xc1", b"\xd4\x05\x00", b"\x92\x01"], strict=True):
        sock.send(encode(ask) + garbage)  # a byte msgpack never uses; ext type 5; a cut array
    probe = Envelope.new(Kind.ASK, "echo", "$client@~sloppy", "echo@local", "probe")
    sock.send(encode(probe))
    sock.answer_to(probe.id)  # errors are sent on the I/O thread, before the probe is delivered
    assert [e for e in sock.of_kind(Kind.ERROR) if e[6] in {ask.id for ask in asks}] == []
    assert node.router.counters["bad_frames"] == len(asks)


def test_every_truncated_frame_is_counted_as_a_bad_frame(
    probe: Probe, make_node: Callable[..., Node], raw: Callable[[str, bytes], Raw]
) -> None:
    node = make_node("local", listen="tcp://127.0.0.1:0")
    node.spawn(Collector, "collector", probe=probe)
    assert node.address is not None
    assert node.router is not None
    sock = raw(node.address, b"cutter")
    whole = encode(Envelope.new(Kind.ASK, "echo", "$client@~cutter", "echo@local", {"n": 0.5}))
    cuts = [whole[:k] for k in range(1, len(whole))]  # every cut, on and between elements
    frames = [*cuts, *(_tell(k, "cutter", "collector@local") + cut for k, cut in enumerate(cuts))]
    for frame in frames:
        sock.send(frame)
    sock.send(_tell("done", "cutter", "collector@local"))
    probe.wait_for(lambda ev: "done" in ev)  # FIFO: every cut frame has been handled
    assert node.router.counters["bad_frames"] == len(frames)


def test_a_heartbeat_from_a_stranger_does_not_make_it_a_peer(
    make_node: Callable[..., Node], raw: Callable[[str, bytes], Raw]
) -> None:
    node = make_node("local", listen="tcp://127.0.0.1:0")
    node.spawn(Echo, "echo")
    assert node.address is not None
    sock = raw(node.address, b"stranger")
    beat = Envelope.new(Kind.HEARTBEAT, "node.heartbeat", "$node@stranger", "$node@local", {})
    ask = Envelope.new(Kind.ASK, "echo", "$client@~stranger", "echo@local", 1)
    sock.send(encode(beat))
    sock.send(encode(ask))
    assert sock.answer_to(ask.id)[2] == Kind.REPLY  # FIFO: the heartbeat was handled
    assert "stranger" not in node.peers()
