"""Agents spawned on this node by a peer or a client: ``node.spawn`` and ``node.terminate``.

A node imports only the classes it allows (its ``spawnable`` list of ``package.module:Class``,
from ``macp node start --spawnable`` or a topology file's ``gateway.spawnable``): the class a
peer names is compared to the list as a string before anything is imported. The spawn runs on
a thread of its own (an agent's start may take a while; the transport's I/O thread never
waits), at most :data:`MAX_SPAWNING` at once, and its answer settles the ask later.
``node.terminate`` stops, for good, only an agent that ``node.spawn`` started.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final

from macp._loader import load_class
from macp.errors import ConfigError, InvalidParams, MacpError, ResourceUnavailable, Unauthorized
from macp.futures import AskFuture

if TYPE_CHECKING:
    from collections.abc import Iterable

    from macp.envelope import Wire
    from macp.runtime import NodeRuntime

__all__ = ["MAX_SPAWNING", "SPAWN", "TERMINATE", "RemoteSpawns", "least_loaded"]

SPAWN: Final = "node.spawn"
TERMINATE: Final = "node.terminate"
MAX_SPAWNING: Final = 4
_OPTIONAL: Final = ("role", "group", "supervisor")


def _text(body: dict[str, Any], field: str, *, required: bool) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidParams(f"{SPAWN} needs {field!r} as a non-empty string, not {value!r}")
    return value


class RemoteSpawns:
    """``node.spawn`` and ``node.terminate``, for one node.

    Args:
        node: the node.
        spawnable: the classes it allows, as ``package.module:Class``.
    """

    def __init__(self, node: NodeRuntime, spawnable: Iterable[str]) -> None:
        self._node = node
        self.spawnable = tuple(sorted(set(spawnable)))
        self._spawned: set[str] = set()  # names node.spawn started, that node.terminate may stop
        self._lock = threading.Lock()
        self._running = 0

    def check(self) -> None:
        """Import every allowed class now (a bad entry fails the node's start, not a spawn).

        Raises:
            ConfigError: an entry does not import, or is not an Agent subclass.
        """
        for path in self.spawnable:
            load_class(path, "spawnable")

    def answer(self, type: str, body: Wire) -> AskFuture:
        """The answer to ``node.spawn`` or ``node.terminate``, settled on a thread of its own."""
        if not isinstance(body, dict):
            raise InvalidParams(f"{type} needs a map, e.g. {{'class': 'pkg.mod:Cls', 'name': 'x'}}")
        with self._lock:
            if self._running >= MAX_SPAWNING:
                raise ResourceUnavailable(
                    f"node {self._node.name!r} is busy spawning {MAX_SPAWNING} agents; ask again"
                )
            self._running += 1
        future = AskFuture(f"$node@{self._node.name}", type, 60.0)
        work = self._spawn if type == SPAWN else self._terminate
        thread = threading.Thread(
            target=self._run, args=(work, body, future), name=f"macp-{self._node.name}-spawn",
            daemon=True,
        )  # fmt: skip
        thread.start()
        return future

    def _run(self, work: Any, body: dict[str, Any], future: AskFuture) -> None:
        try:
            future.settle(work(body))
        except MacpError as e:
            future.settle(exc=e)
        except Exception as e:  # noqa: BLE001 - a class's own failure must not hang the asker
            failed = f"{work.__name__.strip('_')} failed: {type(e).__name__}: {e}"
            future.settle(exc=ConfigError(f"node {self._node.name!r}: {failed}"))
        finally:
            with self._lock:
                self._running -= 1

    def _spawn(self, body: dict[str, Any]) -> Wire:
        path = str(_text(body, "class", required=True))
        name = str(_text(body, "name", required=True))
        if path not in self.spawnable:
            allowed = ", ".join(self.spawnable) or "none"
            raise Unauthorized(
                f"node {self._node.name!r} does not allow spawning {path!r} (it allows: "
                f"{allowed}); start it with --spawnable {path}, or list it under "
                "gateway.spawnable in its topology file"
            )
        config = body.get("config")
        if config is not None and not isinstance(config, dict):
            raise InvalidParams(f"{SPAWN} 'config' must be a map, not {config!r}")
        capabilities = body.get("capabilities")
        if capabilities is not None and (
            not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities)
        ):
            raise InvalidParams(f"{SPAWN} 'capabilities' must be a list of strings")
        extra = {f: _text(body, f, required=False) for f in _OPTIONAL}
        cls = load_class(path, f"{SPAWN} class")
        agent: dict[str, Any] = {k: v for k, v in extra.items() if k != "supervisor" and v}
        if capabilities is not None:
            agent["capabilities"] = capabilities
        self._node.spawn(cls, name, config=config, supervisor=extra["supervisor"], **agent)
        with self._lock:
            self._spawned.add(name)
        return {"address": f"{name}@{self._node.name}", "node": self._node.name, "class": path}

    def _terminate(self, body: dict[str, Any]) -> Wire:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidParams(f"{TERMINATE} needs the agent's 'name' as a string")
        with self._lock:
            if name not in self._spawned:
                raise Unauthorized(
                    f"node {self._node.name!r} did not spawn {name!r} through {SPAWN}; only "
                    "such agents may be terminated so (stop others with a control command)"
                )
        supervisor = body.get("supervisor")
        done = self._node.terminate(name, supervisor=supervisor or None)
        with self._lock:
            self._spawned.discard(name)
        return {"terminated": done}


def least_loaded(records: Iterable[dict[str, Any]], nodes: Iterable[str]) -> str | None:
    """Of ``nodes``, the one whose agents (the registry's records, offline ones aside) are
    fewest plus most loaded: the smallest count of agents plus the sum of their loads (the
    name breaks ties); ``None`` if ``nodes`` is empty."""
    weight = dict.fromkeys(nodes, 0)
    for record in records:
        node = record.get("node")
        if node in weight and record.get("status") != "offline":
            weight[node] += 1 + int(record.get("load") or 0)
    return min(weight, key=lambda n: (weight[n], n)) if weight else None
