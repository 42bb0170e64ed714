"""Failure detection as a pure state machine, driven with explicit times."""

from __future__ import annotations

from macp.transport.liveness import Liveness, PeerEvent, PeerState


def _liveness() -> Liveness:
    live = Liveness(interval_s=1.0, misses=3, acceptable_pause_s=0.5)
    live.add("b")
    return live


def test_a_peer_is_up_at_its_first_traffic_and_not_before() -> None:
    live = _liveness()
    assert live.state("b") is PeerState.JOINING
    assert live.check(100.0) == []
    assert live.seen("b", 0.0) == [PeerEvent("node.up", "b", "heard")]
    assert live.seen("b", 0.5) == []


def test_a_silent_peer_is_down_only_after_the_misses_and_the_pause() -> None:
    live = _liveness()
    live.seen("b", 10.0)
    assert live.check(13.5) == []  # 3 intervals + 0.5 s pause: not yet
    assert live.check(13.51) == [PeerEvent("node.down", "b", "silent")]
    assert live.check(20.0) == []  # reported once
    assert live.seen("b", 21.0) == [PeerEvent("node.up", "b", "heard")]


def test_a_new_incarnation_while_up_is_a_down_then_an_up() -> None:
    live = _liveness()
    live.seen("b", 0.0, "first")
    assert live.seen("b", 1.0, "second") == [
        PeerEvent("node.down", "b", "restarted"),
        PeerEvent("node.up", "b", "heard"),
    ]


def test_a_peer_back_after_being_found_down_is_not_also_restarted() -> None:
    live = _liveness()
    live.seen("b", 0.0, "first")
    assert live.check(10.0) == [PeerEvent("node.down", "b", "silent")]
    assert live.seen("b", 11.0, "second") == [PeerEvent("node.up", "b", "heard")]


def test_a_goodbye_is_down_at_once() -> None:
    live = _liveness()
    live.seen("b", 0.0)
    assert live.left("b") == [PeerEvent("node.down", "b", "left")]
    assert live.left("b") == []
    assert live.snapshot(2.0, {"b": "tcp://x:1"}) == {
        "b": {"address": "tcp://x:1", "state": "down", "last_seen_s": 2.0}
    }


def test_a_closed_connection_and_one_silent_interval_is_down_sooner() -> None:
    live = _liveness()
    live.seen("b", 10.0)
    live.disconnected("b", 10.2)
    assert live.check(11.1) == []  # one interval after the close: not yet
    assert live.check(11.3) == [PeerEvent("node.down", "b", "disconnected")]


def test_a_connection_that_comes_back_clears_the_suspicion() -> None:
    live = _liveness()
    live.seen("b", 10.0)
    live.disconnected("b", 10.2)
    live.connected("b")
    assert live.check(12.0) == []
    live.disconnected("b", 12.5)
    live.seen("b", 12.6)  # traffic: it is alive
    assert live.check(13.9) == []
