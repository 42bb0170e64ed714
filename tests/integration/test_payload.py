"""The payload rule, by default (strict off): a body, reply or task result that could not cross
nodes fails at once, in the same way on one node and across two, naming the type and where it
sits; a payload over max_message_bytes is refused by its sender in both directions."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import TYPE_CHECKING, Any, Final

import pytest
from agents import Echo, Returner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import macp
from macp import Cluster, Settings, start_control_plane
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

LIMIT: Final = 65_536
DEFAULTS: Final = Settings(
    strict=False, max_message_bytes=LIMIT, heartbeat_interval_s=0.2, acceptable_pause_s=0.4
)
PROCESS_DEFAULTS: Final = (
    "--max-message-bytes", str(LIMIT), "--heartbeat-s", "0.2", "--acceptable-pause-s", "0.4",
)  # fmt: skip
NOT_STRICT: Final = {"MACP_STRICT": "0"}
WHERE: Final = {"local": "ret@here", "remote": "ret@p1"}


@pytest.fixture
def here(procs: Callable[..., NodeProcess], make_node: Callable[..., Node]) -> Node:
    """Node "here" (this process) and node "p1" (a process), both with the default settings
    (strict off) and a limit of 64 KiB, each running a Returner "ret" and an Echo "echo"."""
    node = make_node("here", listen="tcp://127.0.0.1:0", settings=DEFAULTS)
    node.spawn(Returner, "ret")
    node.spawn(Echo, "echo")
    agents = ("--agent", "ret=agents:Returner", "--agent", "echo=agents:Echo")
    procs("p1", "--peer", f"here={node.address}", *PROCESS_DEFAULTS, *agents, env=NOT_STRICT)
    _wait_up(node, "p1")
    return node


def _wait_up(node: Node, peer: str) -> None:
    assert node.router is not None
    router = node.router
    wait_until(lambda: router.peers().get(peer, {}).get("state") == "up", 10, f"{peer} not up")


def _outcome(node: Node, address: str, recipe: Any) -> tuple[Any, ...]:
    """What asking ``address`` to return what ``recipe`` builds comes to, within a second."""
    start = time.monotonic()
    try:
        value = node.ask(address, "give", {"recipe": recipe}, timeout_s=10).get()
    except macp.MacpError as e:
        # the same words wherever the agent runs ("ret@here" or "ret@p1": "ret@NODE")
        outcome: tuple[Any, ...] = (type(e).__name__, re.sub(r"@(here|p1)\b", "@NODE", e.message))
    else:
        outcome = ("ok", value)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0, f"{address} took {elapsed:.2f} s to answer {recipe!r:.80}"
    return outcome


def _v(value: Any) -> list[Any]:
    return ["v", value]


REFUSED: Final = {
    "a set": (
        ["dict", [[_v("tags"), ["set", [_v(1), _v(2)]]]]],
        r"result\['tags'\]: set is not msgpack-native",
    ),
    "a datetime": (
        ["dict", [[_v("when"), ["datetime", 0]]]],
        r"result\['when'\]: datetime is not msgpack-native",
    ),
    "an object of the user's": (
        ["list", [_v(1), ["object"]]],
        r"result\[1\]: Opaque is not msgpack-native",
    ),
    "an int key": (
        ["dict", [[_v("counts"), ["dict", [[_v(3), _v("three")]]]]]],
        r"result\['counts'\]\[3\]: a map key of type int is not allowed; use str keys",
    ),
    "an int over 64 bits": (
        ["int", str(2**70)],
        r"result: an int of 71 bits is out of msgpack's 64-bit range; send it as a str",
    ),
    "one byte too many": (
        ["str", LIMIT - 2],  # a str of n >= 256 bytes packs in n + 3
        (
            rf"the reply of ret@NODE to 'give' for \$client@NODE is {LIMIT + 1:,} bytes packed, "
            rf"over max_message_bytes \({LIMIT:,}\)"
        ),
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_reply_that_cannot_cross_nodes_fails_at_once_and_alike_on_one_node(
    here: Node, case: str
) -> None:
    recipe, message = REFUSED[case]
    local, remote = (_outcome(here, WHERE[w], recipe) for w in ("local", "remote"))
    assert local[0] == remote[0] == "InvalidParams"
    assert re.match(message, local[1]), local
    assert local == remote


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        (["tuple", [_v(1), ["tuple", [_v("a")]]]], [1, ["a"]]),
        (["bytearray", 3], b"\0\0\0"),
        (["dict", [[_v(b"raw"), _v(1)]]], {b"raw": 1}),
        (["str", LIMIT - 3], "x" * (LIMIT - 3)),  # exactly the limit, packed
    ],
    ids=["a tuple", "a bytearray", "a bytes key", "exactly the limit"],
)
def test_what_msgpack_reads_back_as_another_type_arrives_as_that_type_everywhere(
    here: Node, recipe: Any, expected: Any
) -> None:
    local, remote = (_outcome(here, WHERE[w], recipe) for w in ("local", "remote"))
    assert local == remote == ("ok", expected)


def test_a_body_that_cannot_cross_is_refused_at_the_call_locally_and_remotely(
    here: Node,
) -> None:
    for dst in ("echo@here", "echo@p1"):
        with pytest.raises(
            macp.InvalidParams,
            match=rf"^body\['ids'\]: set is not msgpack-native; .* \('echo' from \$client@here "
            rf"to {dst}\)$",
        ):
            here.ask(dst, "echo", {"ids": {1, 2}})  # type: ignore[dict-item]
        with pytest.raises(macp.InvalidParams, match=r"^body: datetime is not msgpack-native"):
            here.tell(dst, "echo", dt.datetime.now(tz=dt.UTC))  # type: ignore[arg-type]
    # an agent's own ask is refused in its thread, where it can handle the error
    for dst in ("echo@here", "echo@p1"):
        for asker in ("ret@here", "ret@p1"):
            recipe = ["dict", [[_v("at"), ["object"]]]]
            answer = here.ask(asker, "send", {"to": dst, "recipe": recipe}).get()
            assert answer["error"] == "InvalidParams"
            assert answer["message"].startswith("body['at']: Opaque is not msgpack-native")


def test_an_oversize_request_is_refused_by_its_sender_and_the_node_goes_on(here: Node) -> None:
    counters = here.counters["refused_payload"]
    for dst in ("echo@here", "echo@p1"):
        with pytest.raises(macp.InvalidParams, match=r"over max_message_bytes \(65,536\)"):
            here.ask(dst, "echo", "x" * LIMIT)
    assert here.counters["refused_payload"] == counters + 2
    for asker in ("ret@here", "ret@p1"):
        answer = here.ask(asker, "send", {"to": "echo@p1", "recipe": ["str", LIMIT]}).get()
        assert answer["error"] == "InvalidParams"
        assert "over max_message_bytes (65,536)" in answer["message"]
    assert here.ask("echo@p1", "echo", "x" * 1000).get()["echo"] == "x" * 1000


def test_the_agent_whose_reply_is_refused_counts_it_and_says_why(here: Node) -> None:
    with pytest.raises(macp.InvalidParams):
        here.ask("ret@p1", "give", {"recipe": ["set", []]}).get()
    status = here.control("ret@p1", "status").get()
    assert status["counters"]["failed"] == 1
    assert status["last_error"].startswith("InvalidParams: result: set is not msgpack-native")


def test_a_task_result_that_cannot_cross_fails_the_task_at_once_and_is_not_retried(
    procs: Callable[..., NodeProcess], make_node: Callable[..., Node], tmp_path: Path
) -> None:
    head = make_node("head", listen="tcp://127.0.0.1:0", settings=DEFAULTS)
    start_control_plane(head, journal=tmp_path / "journal.sqlite3")
    head.spawn(Returner, "ret")
    procs(
        "w1", "--head", "head", "--peer", f"head={head.address}", *PROCESS_DEFAULTS,
        "--agent", "ret=agents:Returner", env=NOT_STRICT,
    )  # fmt: skip
    _wait_up(head, "w1")
    cluster = Cluster(head)
    cluster.wait_for_agents(["ret@head", "ret@w1"])
    for agent in ("ret@head", "ret@w1"):
        task = cluster.submit(
            "give", {"recipe": ["dict", [[_v("when"), ["datetime", 0]]]]}, agent=agent,
            max_retries=3,
        )  # fmt: skip
        start = time.monotonic()
        with pytest.raises(
            macp.InvalidParams, match=r"^result\['when'\]: datetime is not msgpack-native"
        ):
            task.result(timeout_s=10)
        assert time.monotonic() - start < 1.0
        assert task.status()["attempts"] == 1
    # the head and its coordinator go on
    ok = cluster.submit("give", {"recipe": _v("fine")}, agent="ret@w1")
    assert ok.result(timeout_s=10) == "fine"


# -- the property: the same outcome on one node and across two ---------------------------------

_KEYS = (
    st.text(max_size=6).map(_v)
    | st.integers(-5, 5).map(_v)
    | st.binary(max_size=4).map(_v)
    | st.none().map(_v)
)
_LEAVES = (
    st.none().map(_v)
    | st.booleans().map(_v)
    | st.integers(-(2**70), 2**70).map(
        lambda n: _v(n) if -(2**63) <= n < 2**64 else ["int", str(n)]
    )
    | st.floats(allow_nan=False).map(_v)
    | st.text(max_size=12).map(_v)
    | st.binary(max_size=12).map(_v)
    | st.integers(0, 2**31).map(lambda s: ["datetime", s])
    | st.just(["object"])
    | st.integers(LIMIT - 40, LIMIT + 10).map(lambda n: ["str", n])
    | st.integers(LIMIT - 40, LIMIT + 10).map(lambda n: ["bytes", n])
    | st.integers(0, 20).map(lambda n: ["bytearray", n])
)
RECIPES = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: ["list", items])
        | st.lists(children, max_size=4).map(lambda items: ["tuple", items])
        | st.lists(st.integers(0, 9).map(_v), max_size=3).map(lambda items: ["set", items])
        | st.lists(st.tuples(_KEYS, children), max_size=4).map(
            lambda pairs: ["dict", [list(p) for p in pairs]]
        )
    ),
    max_leaves=8,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(recipe=RECIPES)
def test_any_returned_value_has_the_same_outcome_on_one_node_and_across_two(
    here: Node, recipe: Any
) -> None:
    assert _outcome(here, WHERE["local"], recipe) == _outcome(here, WHERE["remote"], recipe)


def test_a_message_larger_than_the_receiving_node_accepts_is_refused_by_its_sender(
    procs: Callable[..., NodeProcess], make_node: Callable[..., Node]
) -> None:
    """Nodes say in their hello how large a frame they take; a sender whose own limit is
    higher refuses a message the receiver would not take, rather than let ZeroMQ drop it."""
    big = Settings(strict=False, max_message_bytes=4 * LIMIT)
    node = make_node("here", listen="tcp://127.0.0.1:0", settings=big)
    procs(
        "small", "--peer", f"here={node.address}", *PROCESS_DEFAULTS, "--agent",
        "echo=agents:Echo", env=NOT_STRICT,
    )  # fmt: skip
    _wait_up(node, "small")
    start = time.monotonic()
    with pytest.raises(macp.EnvelopeError, match=r"over the 131,072 its node accepts"):
        node.ask("echo@small", "echo", "x" * (3 * LIMIT), timeout_s=10).get()
    assert time.monotonic() - start < 1.0
    assert node.ask("echo@small", "echo", "x" * 1000).get()["echo"] == "x" * 1000


def test_the_strict_setting_takes_payloads_up_to_a_raised_limit(
    make_node: Callable[..., Node],
) -> None:
    node = make_node("big", settings=Settings(strict=True, max_message_bytes=12 * 1024 * 1024))
    node.spawn(Echo, "echo")
    text = "x" * (11 * 1024 * 1024)  # over the default 10 MiB, under this node's limit
    assert node.ask("echo", "echo", text).get()["echo"] == text
