"""macp.testing.check_transport: the real transport keeps the contract, and a transport that
breaks it fails the check, naming the property it breaks."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from macp.testing import check_transport, router_transport

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from macp import Envelope, Settings
    from macp.testing import Transport
    from macp.transport.callbacks import Callbacks

pytestmark = pytest.mark.integration


class Broken:
    """The real transport, with ``mangle`` deciding what each send becomes (a list of sends)."""

    def __init__(
        self,
        inner: Transport,
        mangle: Callable[[int, tuple[Envelope, str]], list[tuple[Envelope, str]]],
    ) -> None:
        self._inner = inner
        self._mangle = mangle
        self._sent = 0
        self._lock = threading.Lock()

    @property
    def address(self) -> str | None:
        return self._inner.address

    def start(self, timeout_s: float = 10.0) -> None:
        self._inner.start(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._inner.stop(timeout_s)

    def send(self, env: Envelope, node: str) -> None:
        with self._lock:
            self._sent += 1
            sends = self._mangle(self._sent, (env, node))
        for each in sends:
            self._inner.send(*each)


def _broken(
    mangle: Callable[[int, tuple[Envelope, str]], list[tuple[Envelope, str]]],
) -> Callable[..., Transport]:
    def make(
        name: str, callbacks: Callbacks, *, settings: Settings, peers: Mapping[str, str]
    ) -> Transport:
        return Broken(router_transport(name, callbacks, settings=settings, peers=peers), mangle)

    return make


def _drop_every_second(n: int, send: tuple[Envelope, str]) -> list[tuple[Envelope, str]]:
    return [] if n % 2 == 0 else [send]


def _swapping() -> Callable[[int, tuple[Envelope, str]], list[tuple[Envelope, str]]]:
    """Holds every 10th send back until the next one, then sends both, swapped."""
    held: list[tuple[Envelope, str]] = []

    def mangle(n: int, send: tuple[Envelope, str]) -> list[tuple[Envelope, str]]:
        if n % 10 == 0:
            held.append(send)
            return []
        sends, held[:] = [send, *held], []
        return sends

    return mangle


def test_the_real_transport_passes_the_check() -> None:
    check_transport(router_transport)


def test_a_transport_losing_every_second_message_fails_naming_the_property() -> None:
    with pytest.raises(AssertionError, match=r"^ask and reply: b got no ask from a within 2 s$"):
        check_transport(_broken(_drop_every_second), timeout_s=2.0)


def test_a_transport_swapping_messages_fails_on_order_per_sender() -> None:
    with pytest.raises(
        AssertionError,
        match=r"^order per sender: b got a's tells in another order: \[6, 5, 7\] where "
        r"\[5, 6, 7\] was sent$",
    ):
        check_transport(_broken(_swapping()), timeout_s=2.0)
