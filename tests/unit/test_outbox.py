"""The hand-over to the I/O thread: nothing put is left waiting for a wake-up that never comes."""

from __future__ import annotations

import select
import threading

from macp.transport.outbox import Outbox


def readable(outbox: Outbox[int]) -> bool:
    return bool(select.select([outbox.fileno()], [], [], 0)[0])


def test_a_put_makes_the_descriptor_readable_and_a_take_clears_it() -> None:
    outbox: Outbox[int] = Outbox()
    assert not readable(outbox)
    outbox.put(1)
    outbox.put(2)
    assert readable(outbox)
    assert outbox.take(10) == [1, 2]
    assert not readable(outbox)
    outbox.close()


def test_what_a_take_leaves_over_its_limit_signals_again() -> None:
    outbox: Outbox[int] = Outbox()
    for i in range(25):
        outbox.put(i)
    assert outbox.take(10) == list(range(10))
    assert readable(outbox)  # no writer will come: the reader must be told to look again
    assert outbox.take(10) == list(range(10, 20))
    assert readable(outbox)
    assert outbox.take(10) == list(range(20, 25))
    assert not readable(outbox)
    outbox.close()


def test_items_put_by_many_threads_during_takes_are_all_taken_in_each_writers_order() -> None:
    outbox: Outbox[tuple[int, int]] = Outbox()
    writers, per_writer = 4, 5_000
    total = writers * per_writer
    stalled = threading.Event()
    taken: list[tuple[int, int]] = []

    def read() -> None:  # woken only by the signal, as the I/O thread is
        while len(taken) < total:
            if not select.select([outbox.fileno()], [], [], 10.0)[0]:
                stalled.set()  # items left, and no signal for them
                return
            taken.extend(outbox.take(700))

    reader = threading.Thread(target=read)
    reader.start()

    def write(w: int) -> None:
        for i in range(per_writer):
            outbox.put((w, i))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reader.join(30)
    assert not stalled.is_set(), f"the reader was left waiting with {len(taken)} items taken"
    assert len(taken) == total
    for w in range(writers):
        assert [i for ww, i in taken if ww == w] == list(range(per_writer))
    outbox.close()
