"""What a node says of itself: ``node.info`` (name, address, uptime, peers, actors, counters,
this process's metrics and the classes it lets others spawn), answered here whether this node
or another one asks; the other asks to the node (``node.spawn``) are handed on."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from macp.errors import MacpError, UnknownMessageType
from macp.futures import AskFuture
from macp.transport.router import SYSTEM

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Callable, Mapping, Sequence

    from macp.envelope import Wire
    from macp.runtime import NodeRuntime

__all__ = ["INFO", "NodeInfo", "process_metrics"]

INFO: Final = "node.info"


class NodeInfo:
    """The asks addressed to a node itself (``$node@NAME``): ``node.info``.

    Args:
        node: the node.
        transport: the counters of its transport, if it has one.
    """

    def __init__(
        self,
        node: NodeRuntime,
        transport: Callable[[], Counter[str] | None],
        more: Mapping[str, Callable[[str, Wire], AskFuture]] | None = None,
        spawnable: Sequence[str] = (),
    ) -> None:
        self._node = node
        self._transport = transport
        self._more = dict(more or {})  # other asks to the node, answered later (node.spawn)
        self._spawnable = list(spawnable)
        self.started_at = time.time()

    def describe(self) -> dict[str, Any]:
        """Name, address, uptime, peers, actors, counters and this process's metrics."""
        node = self._node
        transport = self._transport()
        return {
            "name": node.name,
            "address": node.address,
            "incarnation": node.incarnation,
            "uptime_s": round(time.time() - self.started_at, 3),
            "peers": node.peers(),
            "head": node.head,
            "actors": sorted(node.agents()),
            "counters": dict(node.counters + transport if transport else node.counters),
            "metrics": process_metrics(),
            "spawnable": self._spawnable,
        }

    def ask(self, type: str, body: Wire) -> AskFuture:
        """:meth:`answer`, as the settled future of an ask to this node."""
        future = AskFuture(f"{SYSTEM}@{self._node.name}", type, 1.0)
        try:
            answer = self.answer(type, body)
            if isinstance(answer, AskFuture):
                return answer
            future.settle(answer)
        except MacpError as e:
            future.settle(exc=e)
        return future

    def answer(self, type: str, body: Wire) -> Wire | AskFuture:
        """The answer to an ask of ``type`` addressed to the node itself (a future, for one
        answered later: ``node.spawn``, ``node.terminate``).

        Raises:
            UnknownMessageType: nodes do not handle ``type``.
        """
        if type == INFO:
            return self.describe()
        more = self._more.get(type)
        if more is not None:
            return more(type, body)
        raise UnknownMessageType(f"nodes do not handle {type!r}")


_process: list[Any] = []  # psutil.Process of this process (cpu_percent needs the same one)


def process_metrics() -> dict[str, float]:
    """This process's cpu (since the last call), memory, open files and sockets (psutil)."""
    import psutil  # noqa: PLC0415

    if not _process or _process[0].pid != os.getpid():
        _process[:] = [psutil.Process()]
    proc = _process[0]
    with proc.oneshot():
        return {
            "cpu_percent": proc.cpu_percent(None),
            "memory_rss_bytes": float(proc.memory_info().rss),
            "open_files": float(proc.num_fds()),
            "open_sockets": float(_sockets(proc)),
        }


def _sockets(proc: Any) -> int:
    """Open sockets: from /proc/self/fd where there is one (microseconds), else psutil's
    connection list (milliseconds: it reads every connection of the host)."""
    try:
        fds = list(Path("/proc/self/fd").iterdir())
    except OSError:
        return len(proc.net_connections(kind="all"))
    count = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            count += str(fd.readlink()).startswith("socket:")
    return count
