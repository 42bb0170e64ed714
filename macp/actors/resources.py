"""The ResourceManager actor: capacity pools, all-or-nothing leases, and path locks.

Messages (body -> reply):

- ``resources.define_pool`` ``{"pool", "capacity"}`` -> ``{"pool", "capacity", "allocated",
  "free"}``; creates the pool or sets its capacity (a number >= 0).
- ``resources.allocate`` ``{"owner", "amounts": {pool: amount > 0}}`` -> ``{"lease_id", "owner",
  "amounts"}``.
- ``resources.release`` ``{"lease_id"}`` -> ``{"released": bool}``.
- ``resources.release_owner`` ``{"owner"}`` -> ``{"released": [lease ids], "locks": [paths]}``.
- ``resources.usage`` (no body) -> ``{pool: {"capacity", "allocated", "free"}}``.
- ``resources.acquire_lock``, ``release_lock``, ``check_lock``: see :mod:`macp.actors.locks`.

An allocation is all or nothing: if any pool is unknown or short, nothing is taken and the
asker gets :class:`~macp.errors.InsufficientResources` whose ``data["missing"]`` maps each such
pool to its shortfall, and ``data["never"]`` (if any) each pool no release could make enough
of (unknown, or smaller than the amount) to why. The manager handles one message at a time,
so allocations from many callers never oversubscribe a pool. A pool may be resized below what
is allocated: the leases stay, and ``free`` is zero until enough of them are released.

Path locks (one owner, optional TTL) live in :mod:`macp.actors.locks`.

Every change reaches the journal before the reply is sent, and the manager reloads pools,
leases and locks from the journal when it starts. Pools in ``config["pools"]`` are written over
the journal's at every start, so the topology file decides their capacity.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from macp.actors._params import body_map, is_number, text
from macp.actors.agent import Agent, handler
from macp.actors.locks import (
    RESOURCES_ACQUIRE_LOCK,
    RESOURCES_CHECK_LOCK,
    RESOURCES_RELEASE_LOCK,
    PathLock,
    PathLocks,
)
from macp.actors.owners import OwnerWatch
from macp.actors.registry import CONTROL_PLANE
from macp.envelope import Wire, now_ms
from macp.errors import (
    ConfigError,
    InsufficientResources,
    InternalError,
    InvalidParams,
)
from macp.store import open_journal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.store import Journal

__all__ = [
    "RESOURCES_ACQUIRE_LOCK",
    "RESOURCES_ALLOCATE",
    "RESOURCES_CHECK_LOCK",
    "RESOURCES_DEFINE_POOL",
    "RESOURCES_RELEASE",
    "RESOURCES_RELEASE_LOCK",
    "RESOURCES_RELEASE_OWNER",
    "RESOURCES_USAGE",
    "ResourceManager",
]

RESOURCES_DEFINE_POOL: Final = "resources.define_pool"
RESOURCES_ALLOCATE: Final = "resources.allocate"
RESOURCES_RELEASE: Final = "resources.release"
RESOURCES_RELEASE_OWNER: Final = "resources.release_owner"
RESOURCES_USAGE: Final = "resources.usage"

_EPS: Final = 1e-9  # float slack when comparing amounts with what is free


class _Lease(NamedTuple):
    owner: str
    amounts: dict[str, float]


# -- body checks: one sentence naming the field and the fix -----------------------------------


def _body(type_: str, body: Wire) -> dict[str, Wire]:
    return body_map(type_, body, "send its fields in a map")


def _text(type_: str, body: Wire, field: str) -> str:
    return text(type_, _body(type_, body), field)


def _capacity(where: str, value: object) -> float:
    if not is_number(value) or value < 0:
        raise InvalidParams(f"{where} must be a number >= 0, got {value!r:.60}; use e.g. 4")
    return float(value)


def _amounts(type_: str, body: Wire) -> dict[str, float]:
    amounts = _body(type_, body).get("amounts")
    if not isinstance(amounts, dict) or not amounts:
        raise InvalidParams(
            f"{type_} needs 'amounts' as a non-empty map of pool to amount, "
            f"got {amounts!r:.60}; send e.g. {{'gpu': 1}}"
        )
    checked: dict[str, float] = {}
    for pool, amount in amounts.items():
        if not isinstance(pool, str) or not pool:
            raise InvalidParams(
                f"{type_} needs the pools in 'amounts' named by strings, got {pool!r:.60}; "
                "send e.g. {'gpu': 1}"
            )
        if not is_number(amount) or amount <= 0:
            raise InvalidParams(
                f"{type_} needs 'amounts.{pool}' to be a number > 0, got {amount!r:.60}; "
                "leave out the pools you do not need"
            )
        checked[pool] = float(amount)
    return checked


class ResourceManager(OwnerWatch, PathLocks, Agent):
    """Capacity pools, all-or-nothing leases and path locks, kept in the journal.

    Config:
        journal: the journal file's path; by default ``default_journal_path(node name)``.
        pools: a map of pool name to capacity, written over the journal's at start.

    Threading: everything runs in the manager's own thread, which alone uses its journal
    connection; the plain methods (:meth:`allocate`, :meth:`release_owner`, ...) are for that
    thread too (its handlers and hooks), never for other threads.
    """

    capabilities = ("resources",)
    group = CONTROL_PLANE
    role = "resources"

    def __init__(self, config: Mapping[str, Wire] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._journal: Journal | None = None
        self._pools: dict[str, float] = {}
        self._allocated: dict[str, float] = {}
        self._holders: Counter[str] = Counter()  # leases per pool, to zero a float sum exactly
        self._leases: dict[str, _Lease] = {}
        self._locks: dict[str, PathLock] = {}

    # -- lifecycle (the manager's thread) -----------------------------------------------------

    def on_start(self) -> None:
        """Open the journal, write the configured pools, load pools, leases and locks.

        Raises:
            ConfigError: a bad ``pools`` or ``journal`` setting, or a journal that cannot be
                opened.
        """
        pools = self.config.get("pools") or {}
        if not isinstance(pools, dict):
            raise ConfigError(
                f"{self.name!r}: config 'pools' must map pool names to capacities, "
                f"not {pools!r:.60}; use e.g. {{'gpu': 2}}"
            )
        try:
            capacities = {p: _capacity(f"config 'pools.{p}'", c) for p, c in pools.items()}
        except InvalidParams as e:
            raise ConfigError(f"{self.name!r}: {e.message}") from e
        journal = self._journal = open_journal(self.config.get("journal"), self.node.name)
        try:
            now = now_ms()
            with journal.transaction():
                for pool, capacity in capacities.items():
                    journal.put_pool(pool, capacity)
                for lock in journal.locks():
                    if PathLock(lock["owner"], lock["expires_at_ms"]).expired(now):
                        journal.delete_lock(lock["path"])
                    else:
                        self._locks[lock["path"]] = PathLock(lock["owner"], lock["expires_at_ms"])
                self._pools = journal.pools()
                for lease in journal.leases():
                    self._take(lease["lease_id"], _Lease(lease["owner"], lease["amounts"]))
        except BaseException:
            self._close()
            raise
        self._watch_owners()
        self.log.info(
            "resources.loaded",
            pools=len(self._pools),
            leases=len(self._leases),
            locks=len(self._locks),
        )

    def owners(self) -> set[str]:
        """Everyone holding a lease or a lock."""
        return {lease.owner for lease in self._leases.values()} | {
            lock.owner for lock in self._locks.values()
        }

    def _receive(self, message: Any) -> Any:
        return None if self._owner_message(message) else super()._receive(message)

    def on_stop(self) -> None:
        """Close the journal."""
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        """Close the journal (the manager crashed)."""
        self._close()

    def _close(self) -> None:
        self._unwatch_owners()
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    @property
    def journal(self) -> Journal:
        """The open journal (only while the manager runs)."""
        if self._journal is None:
            raise InternalError(f"resource manager {self.name!r} has no open journal; start it")
        return self._journal

    # -- pools and leases ---------------------------------------------------------------------

    def define_pool(self, pool: str, capacity: float) -> dict[str, Wire]:
        """Create the pool, or set its capacity; its usage after the change."""
        self.journal.put_pool(pool, capacity)
        self._pools[pool] = capacity
        self.log.info("resources.pool_defined", pool=pool, capacity=capacity)
        return {"pool": pool, **self._usage(pool)}

    def allocate(self, owner: str, amounts: Mapping[str, float]) -> dict[str, Wire]:
        """Lease every amount to ``owner``, or nothing.

        Raises:
            InsufficientResources: a pool is unknown or short; ``data["missing"]`` says by how
                much each one is short.
        """
        missing: dict[str, Wire] = {}
        never: dict[str, str] = {}  # pools no release could make enough of, and why
        reasons = []
        for pool, amount in amounts.items():
            if pool not in self._pools:
                missing[pool] = amount
                reasons.append(never.setdefault(pool, f"{pool!r} is not a pool"))
            elif amount > (free := self._free(pool)) + _EPS:
                missing[pool] = amount - free
                reasons.append(
                    f"{pool!r} is short by {amount - free:g} ({free:g} of {amount:g} free)"
                )
                if amount > self._pools[pool] + _EPS:
                    capacity = self._pools[pool]
                    never[pool] = f"{pool!r} has a capacity of {capacity:g}, less than {amount:g}"
        if missing:
            raise InsufficientResources(
                f"cannot allocate to {owner!r}: {', '.join(reasons)}; nothing was taken",
                data={"missing": missing, **({"never": dict(never)} if never else {})},
            )
        lease_id = uuid.uuid4().hex
        self.journal.put_lease(lease_id, owner, amounts, now_ms())
        self._take(lease_id, _Lease(owner, dict(amounts)))
        return {"lease_id": lease_id, "owner": owner, "amounts": dict(amounts)}

    def release(self, lease_id: str) -> bool:
        """Give a lease's amounts back; ``False`` if there is no such lease."""
        if lease_id not in self._leases:
            return False
        self.journal.delete_lease(lease_id)
        self._give_back(lease_id)
        return True

    def release_owner(self, owner: str) -> dict[str, Wire]:
        """Release every lease and lock of ``owner`` (an agent that died, or its node).

        Returns:
            ``{"released": [lease ids], "locks": [paths]}``, both sorted.
        """
        lease_ids = sorted(i for i, lease in self._leases.items() if lease.owner == owner)
        paths = sorted(p for p, lock in self._locks.items() if lock.owner == owner)
        released: list[Wire] = list(lease_ids)
        unlocked: list[Wire] = list(paths)
        if not lease_ids and not paths:
            return {"released": released, "locks": unlocked}
        with self.journal.transaction() as journal:
            for lease_id in lease_ids:
                journal.delete_lease(lease_id)
            for path in paths:
                journal.delete_lock(path)
        for lease_id in lease_ids:
            self._give_back(lease_id)
        for path in paths:
            del self._locks[path]
        self.log.info(
            "resources.owner_released", owner=owner, leases=len(lease_ids), locks=len(paths)
        )
        return {"released": released, "locks": unlocked}

    def usage(self) -> dict[str, Wire]:
        """Each pool's capacity, allocated amount and free amount."""
        return {pool: self._usage(pool) for pool in sorted(self._pools)}

    def _usage(self, pool: str) -> dict[str, Wire]:
        allocated = self._allocated.get(pool, 0.0)
        return {"capacity": self._pools[pool], "allocated": allocated, "free": self._free(pool)}

    def _free(self, pool: str) -> float:
        return max(0.0, self._pools[pool] - self._allocated.get(pool, 0.0))

    def _take(self, lease_id: str, lease: _Lease) -> None:
        self._leases[lease_id] = lease
        for pool, amount in lease.amounts.items():
            self._allocated[pool] = self._allocated.get(pool, 0.0) + amount
            self._holders[pool] += 1

    def _give_back(self, lease_id: str) -> None:
        for pool, amount in self._leases.pop(lease_id).amounts.items():
            self._holders[pool] -= 1
            if self._holders[pool] <= 0:
                del self._holders[pool]
                self._allocated.pop(pool, None)
            else:
                self._allocated[pool] -= amount

    # -- handlers: check the body, then call the method above ---------------------------------

    @handler(RESOURCES_DEFINE_POOL)
    def _on_define_pool(self, body: Wire) -> Wire:
        pool = _text(RESOURCES_DEFINE_POOL, body, "pool")
        capacity = _body(RESOURCES_DEFINE_POOL, body).get("capacity")
        return self.define_pool(pool, _capacity(f"{RESOURCES_DEFINE_POOL} 'capacity'", capacity))

    @handler(RESOURCES_ALLOCATE)
    def _on_allocate(self, body: Wire) -> Wire:
        owner = _text(RESOURCES_ALLOCATE, body, "owner")
        return self.allocate(owner, _amounts(RESOURCES_ALLOCATE, body))

    @handler(RESOURCES_RELEASE)
    def _on_release(self, body: Wire) -> Wire:
        return {"released": self.release(_text(RESOURCES_RELEASE, body, "lease_id"))}

    @handler(RESOURCES_RELEASE_OWNER)
    def _on_release_owner(self, body: Wire) -> Wire:
        return self.release_owner(_text(RESOURCES_RELEASE_OWNER, body, "owner"))

    @handler(RESOURCES_USAGE)
    def _on_usage(self, _body: Wire) -> Wire:
        return self.usage()
