"""Shared state: the memory store (namespaced keys with a TTL), path locks and resource pools.

Each operation is the control plane's own request (:mod:`macp.actors.memory`,
:mod:`macp.actors.locks`, :mod:`macp.actors.resources`): every write is journaled on the head
before it is answered, so what a client stores outlives a restart of the head and of the
gateway. Reads are sent again across a restart of the head; writes are sent once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from macp.actors.memory import MEMORY_DELETE, MEMORY_GET, MEMORY_LIST, MEMORY_PUT
from macp.actors.resources import (
    RESOURCES_ACQUIRE_LOCK,
    RESOURCES_ALLOCATE,
    RESOURCES_CHECK_LOCK,
    RESOURCES_RELEASE,
    RESOURCES_RELEASE_LOCK,
    RESOURCES_USAGE,
)
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = [
    "LockAcquire",
    "LockPath",
    "LockRelease",
    "MemoryKey",
    "MemoryList",
    "MemoryStore",
    "ResourceAllocate",
    "ResourceRelease",
    "ResourceUsage",
]

_MEMORY = "memory"
_RESOURCES = "resources"
DEFAULT_NAMESPACE = "default"


# -- memory -------------------------------------------------------------------------------------


class MemoryKey(Params):
    key: str = Field(min_length=1)
    """The key, unique in its namespace."""
    namespace: str = Field(DEFAULT_NAMESPACE, min_length=1)
    """The namespace the key lives in."""


class MemoryStore(MemoryKey):
    value: Any
    """Any JSON value (null included)."""
    ttl_s: float | None = Field(None, gt=0)
    """Seconds until the key expires (default: never)."""


class MemoryList(Params):
    namespace: str = Field(DEFAULT_NAMESPACE, min_length=1)
    """The namespace to list."""
    prefix: str = ""
    """Only the keys that start with this."""


@OPERATIONS.operation(
    "memory_store", MemoryStore, Scope.MEMORY_WRITE,
    "Store a value under namespace/key, journaled on the head; with ttl_s it expires.",
)  # fmt: skip
async def memory_store(runtime: Runtime, p: MemoryStore) -> dict[str, Any]:
    body = {"namespace": p.namespace, "key": p.key, "value": p.value, "ttl_s": p.ttl_s}
    answer = await runtime.request(_MEMORY, MEMORY_PUT, body)
    return {"namespace": p.namespace, "key": p.key, "stored": True,
            "expires_at_ms": answer["expires_at_ms"]}  # fmt: skip


@OPERATIONS.operation(
    "memory_retrieve", MemoryKey, Scope.MEMORY_READ,
    "The value under namespace/key; found is false if there is none (or it expired).",
)  # fmt: skip
async def memory_retrieve(runtime: Runtime, p: MemoryKey) -> dict[str, Any]:
    answer = await runtime.read(_MEMORY, MEMORY_GET, {"namespace": p.namespace, "key": p.key})
    return {"namespace": p.namespace, "key": p.key, **answer}


@OPERATIONS.operation(
    "memory_delete", MemoryKey, Scope.MEMORY_WRITE,
    "Delete namespace/key; deleted says whether a live value was there.",
)  # fmt: skip
async def memory_delete(runtime: Runtime, p: MemoryKey) -> dict[str, Any]:
    answer = await runtime.request(_MEMORY, MEMORY_DELETE, {"namespace": p.namespace, "key": p.key})
    return {"namespace": p.namespace, "key": p.key, "deleted": answer["deleted"]}


@OPERATIONS.operation(
    "memory_list", MemoryList, Scope.MEMORY_READ,
    "The keys of a namespace that have not expired, sorted, optionally by prefix.",
)  # fmt: skip
async def memory_list(runtime: Runtime, p: MemoryList) -> dict[str, Any]:
    body = {"namespace": p.namespace, "prefix": p.prefix}
    keys = (await runtime.read(_MEMORY, MEMORY_LIST, body))["keys"]
    return {"namespace": p.namespace, "prefix": p.prefix, "keys": keys, "count": len(keys)}


# -- locks ----------------------------------------------------------------------------------------


class LockPath(Params):
    path: str = Field(min_length=1)
    """The locked path (any string: a file, a record, a name)."""


class LockRelease(LockPath):
    owner: str = Field(min_length=1)
    """Who holds the lock: only its owner may release it."""


class LockAcquire(LockRelease):
    ttl_s: float | None = Field(None, gt=0)
    """Seconds until the lock expires by itself (default: never)."""


@OPERATIONS.operation(
    "lock_acquire", LockAcquire, Scope.LOCKS_WRITE,
    "Lock a path for an owner (its own lock: the TTL is refreshed); held by another owner, "
    "the error says by whom and until when.",
)  # fmt: skip
async def lock_acquire(runtime: Runtime, p: LockAcquire) -> dict[str, Any]:
    body = {"path": p.path, "owner": p.owner, "ttl_s": p.ttl_s}
    return dict(await runtime.request(_RESOURCES, RESOURCES_ACQUIRE_LOCK, body))


@OPERATIONS.operation(
    "lock_release", LockRelease, Scope.LOCKS_WRITE,
    "Release a path's lock (only its owner may); released is false if it was not locked.",
)  # fmt: skip
async def lock_release(runtime: Runtime, p: LockRelease) -> dict[str, Any]:
    body = {"path": p.path, "owner": p.owner}
    answer = await runtime.request(_RESOURCES, RESOURCES_RELEASE_LOCK, body)
    return {"path": p.path, "owner": p.owner, "released": answer["released"]}


@OPERATIONS.operation(
    "lock_check", LockPath, Scope.LOCKS_READ, "Whether a path is locked, by whom and until when."
)
async def lock_check(runtime: Runtime, p: LockPath) -> dict[str, Any]:
    return dict(await runtime.read(_RESOURCES, RESOURCES_CHECK_LOCK, {"path": p.path}))


# -- resource pools -----------------------------------------------------------------------------


class ResourceAllocate(Params):
    owner: str = Field(min_length=1)
    """Who holds the lease (an agent address is released when the agent dies)."""
    amounts: dict[str, Annotated[float, Field(gt=0)]] = Field(min_length=1)
    """How much of each pool, e.g. {"gpu": 1}: all of it, or nothing."""


class ResourceRelease(Params):
    lease_id: str = Field(min_length=1)
    """The id resource_allocate answered."""


class ResourceUsage(Params):
    """No parameters."""


@OPERATIONS.operation(
    "resource_allocate", ResourceAllocate, Scope.RESOURCES_WRITE,
    "Lease amounts of the resource pools to an owner, all or nothing; short, the error says "
    "what is missing.",
)  # fmt: skip
async def resource_allocate(runtime: Runtime, p: ResourceAllocate) -> dict[str, Any]:
    body: dict[str, Any] = {"owner": p.owner, "amounts": dict(p.amounts)}
    return dict(await runtime.request(_RESOURCES, RESOURCES_ALLOCATE, body))


@OPERATIONS.operation(
    "resource_release", ResourceRelease, Scope.RESOURCES_WRITE,
    "Give a lease back; released is false if there is no such lease.",
)  # fmt: skip
async def resource_release(runtime: Runtime, p: ResourceRelease) -> dict[str, Any]:
    answer = await runtime.request(_RESOURCES, RESOURCES_RELEASE, {"lease_id": p.lease_id})
    return {"lease_id": p.lease_id, "released": answer["released"]}


@OPERATIONS.operation(
    "resource_usage", ResourceUsage, Scope.RESOURCES_READ,
    "Each resource pool's capacity, allocated amount and free amount.",
)  # fmt: skip
async def resource_usage(runtime: Runtime, _p: ResourceUsage) -> dict[str, Any]:
    return {"pools": dict(await runtime.read(_RESOURCES, RESOURCES_USAGE))}
