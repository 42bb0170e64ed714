"""The mailbox: higher priorities first, FIFO within one priority; each incarnation's own
requests before the mailbox, and gone with it."""

from __future__ import annotations

import threading

import pytest
from pykka._envelope import Envelope as PykkaEnvelope
from pykka.messages import ProxyGetAttr

from macp import Envelope, Kind, Priority
from macp._inbox import ActorInbox, InboxClosed, PriorityInbox


def _env(name: str, prio: Priority = Priority.MEDIUM) -> Envelope:
    return Envelope.new(Kind.TELL, name, "a@n", "b@n", prio=prio)


def test_a_higher_priority_overtakes_and_each_priority_keeps_its_order() -> None:
    inbox = PriorityInbox()
    prios = [Priority.LOW, Priority.MEDIUM, Priority.LOW, Priority.CRITICAL, Priority.MEDIUM,
             Priority.HIGH, Priority.CRITICAL]  # fmt: skip
    for i, prio in enumerate(prios):
        inbox.put(_env(f"m{i}", prio))
    assert inbox.depth() == 7
    assert [inbox.get().type for _ in range(7)] == ["m3", "m6", "m5", "m1", "m4", "m0", "m2"]
    assert inbox.empty()


def test_other_messages_to_the_name_travel_at_medium_priority() -> None:
    inbox = PriorityInbox()
    inbox.put(_env("low", Priority.LOW))
    inbox.put(PykkaEnvelope("local"))
    inbox.put(_env("high", Priority.HIGH))
    got = [inbox.get() for _ in range(3)]
    assert [getattr(i, "type", None) or i.message for i in got] == ["high", "local", "low"]


def test_an_incarnation_reads_its_own_requests_first_and_they_die_with_it() -> None:
    mailbox = PriorityInbox()
    first = ActorInbox(mailbox)
    first.put(_env("a"))
    first.put(PykkaEnvelope(ProxyGetAttr(attr_path=("x",))))
    assert isinstance(first.get().message, ProxyGetAttr)
    first.put(PykkaEnvelope(ProxyGetAttr(attr_path=("y",))))
    assert [type(i).__name__ for i in first.take_private()] == ["Envelope"]
    second = ActorInbox(mailbox)  # a restart: the mailbox is kept, the old requests are not
    second.put(_env("b"))
    assert [second.get().type, second.get().type] == ["a", "b"]
    assert second.empty()


def test_push_front_puts_older_messages_ahead_of_their_lane() -> None:
    inbox = PriorityInbox()
    inbox.put(_env("new"))
    inbox.push_front([_env("old1"), _env("old2")])
    assert [inbox.get().type for _ in range(3)] == ["old1", "old2", "new"]


def test_a_closed_mailbox_refuses_puts_and_returns_what_was_queued() -> None:
    inbox = PriorityInbox()
    inbox.put(_env("a", Priority.LOW))
    assert [i.type for i in inbox.close()] == ["a"]
    with pytest.raises(InboxClosed):
        inbox.put(_env("b"))
    assert inbox.depth() == 0


def test_many_writers_lose_nothing_and_keep_each_writers_order() -> None:
    inbox = PriorityInbox()

    def write(w: int) -> None:
        for i in range(2000):
            inbox.put(_env(f"{w}:{i}"))

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for writer in writers:
        writer.start()
    got = [inbox.get().type for _ in range(8000)]
    for writer in writers:
        writer.join()
    for w in range(4):
        assert [int(t.split(":")[1]) for t in got if t.startswith(f"{w}:")] == list(range(2000))
