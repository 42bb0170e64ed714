"""The priority inbox: higher priorities first, FIFO within one priority."""

from __future__ import annotations

import pykka
import pytest
from pykka._envelope import Envelope as PykkaEnvelope

from macp import Envelope, Kind, Priority
from macp._inbox import InboxClosed, PriorityInbox


def _put(inbox: PriorityInbox, name: str, prio: Priority) -> None:
    inbox.put(PykkaEnvelope(Envelope.new(Kind.TELL, name, "a@n", "b@n", prio=prio)))


def test_a_higher_priority_overtakes_and_each_priority_keeps_its_order() -> None:
    inbox = PriorityInbox()
    for i, prio in enumerate(
        [
            Priority.LOW,
            Priority.MEDIUM,
            Priority.LOW,
            Priority.CRITICAL,
            Priority.MEDIUM,
            Priority.HIGH,
            Priority.CRITICAL,
        ]
    ):
        _put(inbox, f"m{i}", prio)
    order = [inbox.get().message.type for _ in range(7)]
    assert order == ["m3", "m6", "m5", "m1", "m4", "m0", "m2"]
    assert inbox.empty()


def test_pykka_messages_travel_at_medium_priority() -> None:
    inbox = PriorityInbox()
    _put(inbox, "low", Priority.LOW)
    inbox.put(PykkaEnvelope(pykka.messages.ProxyGetAttr(attr_path=("x",))))
    _put(inbox, "high", Priority.HIGH)
    assert [type(inbox.get().message).__name__ for _ in range(3)] == [
        "Envelope", "ProxyGetAttr", "Envelope",
    ]  # fmt: skip


def test_take_foreign_leaves_the_envelopes() -> None:
    inbox = PriorityInbox()
    _put(inbox, "a", Priority.LOW)
    inbox.put(PykkaEnvelope(pykka.messages.ProxyGetAttr(attr_path=("x",))))
    _put(inbox, "b", Priority.CRITICAL)
    assert [type(i.message).__name__ for i in inbox.take_foreign()] == ["ProxyGetAttr"]
    assert [inbox.get().message.type for _ in range(2)] == ["b", "a"]


def test_push_front_puts_older_messages_ahead_of_their_lane() -> None:
    inbox = PriorityInbox()
    _put(inbox, "new", Priority.MEDIUM)
    held = [Envelope.new(Kind.TELL, name, "a@n", "b@n") for name in ("old1", "old2")]
    inbox.push_front(held)
    assert [inbox.get().message.type for _ in range(3)] == ["old1", "old2", "new"]


def test_a_closed_inbox_refuses_puts_and_returns_what_was_queued() -> None:
    inbox = PriorityInbox()
    _put(inbox, "a", Priority.LOW)
    assert [i.message.type for i in inbox.close()] == ["a"]
    with pytest.raises(InboxClosed):
        _put(inbox, "b", Priority.LOW)
    assert inbox.depth() == 0
