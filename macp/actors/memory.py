"""The MemoryStore actor: namespaced key/value with TTL, persisted in the journal.

=================  ==============================================  ================================
type               body                                            reply
=================  ==============================================  ================================
``memory.put``     ``{"namespace", "key", "value", "ttl_s"?}``     ``{"ok": True, "expires_at_ms"}``
``memory.get``     ``{"namespace", "key"}``                        ``{"found", "value",
                                                                   "expires_at_ms"}``
``memory.delete``  ``{"namespace", "key"}``                        ``{"deleted": bool}``
``memory.list``    ``{"namespace", "prefix"?: ""}``                ``{"keys": [sorted keys]}``
``memory.purge``   ``None`` (sent by the store's own timer)        ``{"purged": int}``
=================  ==============================================  ================================

A value is any msgpack-native data (``None`` included). ``ttl_s`` is a positive number of
seconds, or ``None`` (the default) for a key that never expires. An expired key is gone at once
for ``get``, ``delete`` and ``list``; a timer deletes expired keys from the journal every
``purge_interval_s``. Expiry times are epoch milliseconds, so they hold across a restart.

Every write reaches the journal before the reply is sent; reads come from an in-memory copy
loaded from the journal when the store starts, so a restarted store has the data it had. A
value that cannot be stored (not msgpack-native, a map key that is not a string, nested over
256 deep) fails its ``memory.put`` with :class:`~macp.errors.InvalidParams` naming the part
at fault; a stored row that cannot be read back is set aside as a dead letter when the store
starts (see :mod:`macp.store`), and the store starts with the others.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgpack

from macp.actors._params import body_map, text, ttl_s
from macp.actors.agent import Agent, handler
from macp.actors.registry import CONTROL_PLANE
from macp.commands import AgentState
from macp.envelope import Priority, Wire, now_ms
from macp.errors import ConfigError, InternalError, InvalidParams
from macp.store import Journal, open_journal, storable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp._timers import Timer

__all__ = [
    "MEMORY_DELETE",
    "MEMORY_GET",
    "MEMORY_LIST",
    "MEMORY_PURGE",
    "MEMORY_PUT",
    "MemoryStore",
]

MEMORY_PUT: Final = "memory.put"
MEMORY_GET: Final = "memory.get"
MEMORY_DELETE: Final = "memory.delete"
MEMORY_LIST: Final = "memory.list"
MEMORY_PURGE: Final = "memory.purge"

_DEFAULT_PURGE_INTERVAL_S: Final = 5.0


class _Entry(NamedTuple):
    # The value stays packed: no caller can change it through a reference it was given (local
    # messages are not copied), and a reply holds what a restarted store would return.
    packed: bytes
    expires_at_ms: int | None

    @classmethod
    def of(cls, value: Wire, expires_at_ms: int | None) -> _Entry:
        return cls(msgpack.packb(value, use_bin_type=True), expires_at_ms)

    @property
    def value(self) -> Wire:
        value: Wire = msgpack.unpackb(self.packed, raw=False, strict_map_key=False)
        return value

    def expired(self, now: int) -> bool:
        return self.expires_at_ms is not None and self.expires_at_ms <= now


def _body(type_: str, body: Wire) -> dict[str, Wire]:
    return body_map(type_, body, "send e.g. {'namespace': 'notes', 'key': 'k1'}")


def _ttl_s(type_: str, body: dict[str, Wire]) -> float | None:
    return ttl_s(type_, body, "use e.g. 60, or leave it out for a key that never expires")


class MemoryStore(Agent):
    """Namespaced key/value store with TTL, kept in the journal (see the module's table).

    Config:
        journal: the journal file's path; by default ``default_journal_path(node name)``.
        purge_interval_s: how often expired keys are deleted from the journal (default 5).

    Threading: everything runs in the store's own thread, which alone uses its journal
    connection; the purge timer only sends the store a ``memory.purge`` message.
    """

    capabilities = ("memory",)
    group = CONTROL_PLANE
    role = "memory"

    def __init__(self, config: Mapping[str, Wire] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._journal: Journal | None = None
        self._data: dict[str, dict[str, _Entry]] = {}
        self._expiries: list[tuple[int, str, str]] = []  # a heap; stale items are skipped
        self._timer: Timer | None = None

    # -- lifecycle (the store's thread) -------------------------------------------------------

    def on_start(self) -> None:
        """Open the journal, load the keys that have not expired, start the purge timer (a
        row that cannot be read back is set aside by the journal, not loaded).

        Raises:
            ConfigError: a bad ``journal`` or ``purge_interval_s``, or a journal that cannot
                be opened.
        """
        interval_s = self.config.get("purge_interval_s", _DEFAULT_PURGE_INTERVAL_S)
        if isinstance(interval_s, bool) or not isinstance(interval_s, int | float):
            interval_s = -1
        if not 0 < interval_s < math.inf:
            raise ConfigError(
                f"memory store {self.name!r}: config 'purge_interval_s' must be a positive "
                f"number of seconds, not {self.config.get('purge_interval_s')!r}; use e.g. 5"
            )
        self._journal = open_journal(self.config.get("journal"), self.node.name)
        try:
            now = now_ms()
            for namespace, key, value, expires_at_ms in self._journal.all_memory_items():
                entry = _Entry.of(value, expires_at_ms)
                if not entry.expired(now):
                    self._set(namespace, key, entry)
        except BaseException:
            self._close()
            raise
        self._timer = self.node.scheduler.call_every(interval_s, self._tell_purge)
        self.log.info(
            "memory.loaded",
            keys=sum(len(keys) for keys in self._data.values()),
            journal=str(self._journal.path),
        )

    def on_stop(self) -> None:
        """Stop the purge timer and close the journal."""
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        """Stop the purge timer and close the journal (the store crashed)."""
        self._close()

    def _close(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    def _tell_purge(self) -> None:
        # The timer thread: a LOW-priority nudge, skipped while the store holds or refuses work.
        if self.state is AgentState.RUNNING:
            self.tell(self.address, MEMORY_PURGE, None, prio=Priority.LOW)

    @property
    def journal(self) -> Journal:
        """The open journal (only while the store runs)."""
        journal = self._journal
        if journal is None:
            raise InternalError(f"memory store {self.name!r} has no open journal; start it first")
        return journal

    # -- handlers -----------------------------------------------------------------------------

    @handler(MEMORY_PUT)
    def put(self, body: Wire) -> Wire:
        """Store a value under ``namespace``/``key``, replacing any old one."""
        body = _body(MEMORY_PUT, body)
        namespace = text(MEMORY_PUT, body, "namespace")
        key = text(MEMORY_PUT, body, "key")
        if "value" not in body:
            raise InvalidParams(
                f"{MEMORY_PUT} needs 'value' (any msgpack data, null included); add it to the body"
            )
        ttl_s = _ttl_s(MEMORY_PUT, body)
        expires_at_ms = None if ttl_s is None else now_ms() + max(1, math.ceil(ttl_s * 1000))
        packed = storable(body["value"], f"{MEMORY_PUT} field 'value'", "value")
        self.journal.put_memory(namespace, key, body["value"], expires_at_ms)
        self._set(namespace, key, _Entry(packed, expires_at_ms))
        return {"ok": True, "expires_at_ms": expires_at_ms}

    @handler(MEMORY_GET)
    def get(self, body: Wire) -> Wire:
        """The value under ``namespace``/``key``; ``found`` is false if none has not expired."""
        body = _body(MEMORY_GET, body)
        entry = self._live(text(MEMORY_GET, body, "namespace"), text(MEMORY_GET, body, "key"))
        if entry is None:
            return {"found": False, "value": None, "expires_at_ms": None}
        return {"found": True, "value": entry.value, "expires_at_ms": entry.expires_at_ms}

    @handler(MEMORY_DELETE)
    def delete(self, body: Wire) -> Wire:
        """Delete ``namespace``/``key``; ``deleted`` says whether a live value was there."""
        body = _body(MEMORY_DELETE, body)
        namespace = text(MEMORY_DELETE, body, "namespace")
        key = text(MEMORY_DELETE, body, "key")
        live = self._live(namespace, key) is not None
        self.journal.delete_memory(namespace, key)
        keys = self._data.get(namespace, {})
        keys.pop(key, None)
        if not keys:
            self._data.pop(namespace, None)
        return {"deleted": live}

    @handler(MEMORY_LIST)
    def list_keys(self, body: Wire) -> Wire:
        """The sorted keys of ``namespace`` that start with ``prefix`` and have not expired."""
        body = _body(MEMORY_LIST, body)
        namespace = text(MEMORY_LIST, body, "namespace")
        prefix = text(MEMORY_LIST, body, "prefix", empty=True) if "prefix" in body else ""
        now, live = now_ms(), self._data.get(namespace, {})
        keys: list[Wire] = [
            key for key in sorted(live) if key.startswith(prefix) and not live[key].expired(now)
        ]
        return {"keys": keys}

    @handler(MEMORY_PURGE)
    def purge(self, _body: Wire) -> Wire:
        """Delete every expired key, from the journal and from memory; how many the journal had."""
        now = now_ms()
        purged = self.journal.purge_expired_memory(now)
        while self._expiries and self._expiries[0][0] <= now:
            _, namespace, key = heapq.heappop(self._expiries)
            keys = self._data.get(namespace)
            if keys is not None and key in keys and keys[key].expired(now):
                del keys[key]
                if not keys:
                    del self._data[namespace]
        if purged:
            self.log.debug("memory.purged", purged=purged)
        return {"purged": purged}

    # -- the in-memory copy -------------------------------------------------------------------

    def _set(self, namespace: str, key: str, entry: _Entry) -> None:
        self._data.setdefault(namespace, {})[key] = entry
        if entry.expires_at_ms is not None:
            heapq.heappush(self._expiries, (entry.expires_at_ms, namespace, key))

    def _live(self, namespace: str, key: str) -> _Entry | None:
        entry = self._data.get(namespace, {}).get(key)
        return None if entry is None or entry.expired(now_ms()) else entry
