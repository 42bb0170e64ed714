"""Path locks, mixed into the resource manager.

A path lock has one owner and an optional TTL; an expired lock is free, re-acquiring by its
owner refreshes the TTL, and only the owner may release it. Paths are opaque strings.

Messages (body -> reply):

- ``resources.acquire_lock`` ``{"path", "owner", "ttl_s"?}`` -> ``{"acquired": True, "path",
  "owner", "expires_at_ms"}``.
- ``resources.release_lock`` ``{"path", "owner"}`` -> ``{"released": bool}``.
- ``resources.check_lock`` ``{"path"}`` -> ``{"locked", "path", "owner", "expires_at_ms"}``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final, NamedTuple

from macp.actors._params import body_map, text, ttl_s
from macp.actors.agent import handler
from macp.envelope import Wire, now_ms
from macp.errors import ResourceUnavailable

if TYPE_CHECKING:
    from macp.store import Journal

__all__ = [
    "RESOURCES_ACQUIRE_LOCK",
    "RESOURCES_CHECK_LOCK",
    "RESOURCES_RELEASE_LOCK",
    "PathLock",
    "PathLocks",
]

RESOURCES_ACQUIRE_LOCK: Final = "resources.acquire_lock"
RESOURCES_RELEASE_LOCK: Final = "resources.release_lock"
RESOURCES_CHECK_LOCK: Final = "resources.check_lock"


class PathLock(NamedTuple):
    """Who holds a path, and until when (epoch ms; ``None``: no expiry)."""

    owner: str
    expires_at_ms: int | None

    def expired(self, now: int) -> bool:
        return self.expires_at_ms is not None and self.expires_at_ms <= now


def _text(type_: str, body: Wire, field: str) -> str:
    return text(type_, body_map(type_, body, "send its fields in a map"), field)


def _ttl_s(type_: str, body: Wire) -> float | None:
    fields = body_map(type_, body, "send its fields in a map")
    return ttl_s(type_, fields, "use e.g. 30, or leave it out for a lock without expiry")


class PathLocks:
    """Mixed into :class:`~macp.actors.resources.ResourceManager`, which owns ``_locks``."""

    _locks: dict[str, PathLock]

    if TYPE_CHECKING:

        @property
        def journal(self) -> Journal: ...

    def acquire_lock(self, path: str, owner: str, ttl_s: float | None) -> dict[str, Wire]:
        """Lock ``path`` for ``owner`` (its own lock: refresh the TTL).

        Raises:
            ResourceUnavailable: another owner holds a lock on ``path`` that has not expired.
        """
        now = now_ms()
        lock = self._locks.get(path)
        if lock is not None and not lock.expired(now) and lock.owner != owner:
            left_ms = None if lock.expires_at_ms is None else lock.expires_at_ms - now
            until = "with no expiry" if left_ms is None else f"for {left_ms / 1000:.3g} s more"
            raise ResourceUnavailable(
                f"path {path!r} is locked by {lock.owner!r} {until}; "
                "retry later or ask its owner to release it",
                data={"path": path, "owner": lock.owner, "expires_at_ms": lock.expires_at_ms},
            )
        expires_at_ms = None if ttl_s is None else now + max(1, math.ceil(ttl_s * 1000))
        self.journal.put_lock(path, owner, expires_at_ms)
        self._locks[path] = PathLock(owner, expires_at_ms)
        return {"acquired": True, "path": path, "owner": owner, "expires_at_ms": expires_at_ms}

    def release_lock(self, path: str, owner: str) -> bool:
        """Unlock ``path``; ``False`` if it was not locked (or its lock had expired).

        Raises:
            ResourceUnavailable: another owner holds the lock.
        """
        lock = self._locks.get(path)
        if lock is None:
            return False
        live = not lock.expired(now_ms())
        if live and lock.owner != owner:
            raise ResourceUnavailable(
                f"path {path!r} is locked by {lock.owner!r}, not {owner!r}; "
                "only its owner may release it",
                data={"path": path, "owner": lock.owner, "expires_at_ms": lock.expires_at_ms},
            )
        self.journal.delete_lock(path)
        del self._locks[path]
        return live

    def check_lock(self, path: str) -> dict[str, Wire]:
        """Whether ``path`` is locked, by whom and until when (an expired lock is free)."""
        lock = self._locks.get(path)
        if lock is None or lock.expired(now_ms()):
            return {"locked": False, "path": path, "owner": None, "expires_at_ms": None}
        return {
            "locked": True,
            "path": path,
            "owner": lock.owner,
            "expires_at_ms": lock.expires_at_ms,
        }

    # -- handlers ------------------------------------------------------------------------------

    @handler(RESOURCES_ACQUIRE_LOCK)
    def _on_acquire_lock(self, body: Wire) -> Wire:
        path = _text(RESOURCES_ACQUIRE_LOCK, body, "path")
        owner = _text(RESOURCES_ACQUIRE_LOCK, body, "owner")
        return self.acquire_lock(path, owner, _ttl_s(RESOURCES_ACQUIRE_LOCK, body))

    @handler(RESOURCES_RELEASE_LOCK)
    def _on_release_lock(self, body: Wire) -> Wire:
        path = _text(RESOURCES_RELEASE_LOCK, body, "path")
        return {"released": self.release_lock(path, _text(RESOURCES_RELEASE_LOCK, body, "owner"))}

    @handler(RESOURCES_CHECK_LOCK)
    def _on_check_lock(self, body: Wire) -> Wire:
        return self.check_lock(_text(RESOURCES_CHECK_LOCK, body, "path"))
