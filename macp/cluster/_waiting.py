"""Waiting until agents are routable, as the registry sees them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from macp.actors.registry import ROUTABLE
from macp.errors import AskTimeout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["wait_routable"]

_POLL_S: Final = 0.02  # how often the registry is asked


def wait_routable(
    agents: Callable[[], list[dict[str, Any]]],
    addresses: Iterable[str],
    timeout_s: float,
    progress: Callable[[int, int], object] | None = None,
) -> None:
    """Poll the registry's records (``agents()``) until every one of ``addresses`` is routable
    (available or busy); call ``progress(routable, wanted)`` at first and at each change.

    Raises:
        AskTimeout: some are not routable within ``timeout_s``; the message names them, and
            so does its ``data["missing"]``.
    """
    wanted = set(addresses)
    deadline = time.monotonic() + timeout_s
    shown = -1
    while True:
        missing = wanted - {r["address"] for r in agents() if r["status"] in ROUTABLE}
        if progress is not None and len(wanted) - len(missing) != shown:
            shown = len(wanted) - len(missing)
            progress(shown, len(wanted))
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AskTimeout(
                f"agents not routable within {timeout_s:g} s: {sorted(missing)}",
                data={"missing": sorted(missing)},
            )
        time.sleep(_POLL_S)
