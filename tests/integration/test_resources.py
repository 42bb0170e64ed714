"""The ResourceManager actor on a real node and journal: pools, leases, locks, restarts."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from agents import CrashesOnRequest

import macp
from macp.actors.resources import (
    RESOURCES_ACQUIRE_LOCK,
    RESOURCES_ALLOCATE,
    RESOURCES_CHECK_LOCK,
    RESOURCES_DEFINE_POOL,
    RESOURCES_RELEASE,
    RESOURCES_RELEASE_LOCK,
    RESOURCES_RELEASE_OWNER,
    RESOURCES_USAGE,
    ResourceManager,
)
from macp.envelope import now_ms
from macp.store import Journal
from macp.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

    from macp import Node, Ref

pytestmark = pytest.mark.integration


class CrashingResources(CrashesOnRequest, ResourceManager):
    """Dies on ``crash``."""


@pytest.fixture
def resources(node: Node, journal_path: Path) -> Ref:
    config: dict[str, macp.Wire] = {"journal": str(journal_path), "pools": {"cpu": 4, "gpu": 1}}
    return node.spawn(ResourceManager, "resources", config=config)


def _allocate(ref: Ref, owner: str, **amounts: float) -> Any:
    return ref.ask(RESOURCES_ALLOCATE, {"owner": owner, "amounts": dict(amounts)}).get()


def _allocated(ref: Ref) -> dict[str, float]:
    return {pool: u["allocated"] for pool, u in ref.ask(RESOURCES_USAGE).get().items()}


def _lock(ref: Ref, path: str, owner: str, ttl_s: float | None = None) -> Any:
    return ref.ask(RESOURCES_ACQUIRE_LOCK, {"path": path, "owner": owner, "ttl_s": ttl_s}).get()


def _check(ref: Ref, path: str) -> Any:
    return ref.ask(RESOURCES_CHECK_LOCK, {"path": path}).get()


# -- pools and leases -------------------------------------------------------------------------


def test_pools_come_from_the_config(resources: Ref) -> None:
    assert resources.ask(RESOURCES_USAGE).get() == {
        "cpu": {"capacity": 4.0, "allocated": 0.0, "free": 4.0},
        "gpu": {"capacity": 1.0, "allocated": 0.0, "free": 1.0},
    }


def test_an_allocation_takes_from_every_pool_and_release_gives_it_back(resources: Ref) -> None:
    lease = _allocate(resources, "agent-a", cpu=2.5, gpu=1)
    assert lease == {
        "lease_id": lease["lease_id"],
        "owner": "agent-a",
        "amounts": {"cpu": 2.5, "gpu": 1.0},
    }
    assert resources.ask(RESOURCES_USAGE).get() == {
        "cpu": {"capacity": 4.0, "allocated": 2.5, "free": 1.5},
        "gpu": {"capacity": 1.0, "allocated": 1.0, "free": 0.0},
    }
    release = {"lease_id": lease["lease_id"]}
    assert resources.ask(RESOURCES_RELEASE, release).get() == {"released": True}
    assert resources.ask(RESOURCES_RELEASE, release).get() == {"released": False}
    assert _allocated(resources) == {"cpu": 0.0, "gpu": 0.0}


def test_a_short_pool_takes_nothing(resources: Ref) -> None:
    _allocate(resources, "agent-a", cpu=1)
    with pytest.raises(
        macp.InsufficientResources,
        match=r"^cannot allocate to 'agent-b': 'gpu' is short by 1 \(1 of 2 free\); "
        r"nothing was taken$",
    ) as info:
        _allocate(resources, "agent-b", cpu=2, gpu=2)
    assert info.value.data == {
        "missing": {"gpu": 1.0},
        "never": {"gpu": "'gpu' has a capacity of 1, less than 2"},
    }
    assert _allocated(resources) == {"cpu": 1.0, "gpu": 0.0}


def test_an_unknown_pool_takes_nothing_and_every_shortfall_is_named(resources: Ref) -> None:
    with pytest.raises(
        macp.InsufficientResources,
        match=r"'cpu' is short by 1 \(4 of 5 free\), 'tpu' is not a pool; nothing was taken",
    ) as info:
        _allocate(resources, "agent-a", cpu=5, tpu=1)
    assert info.value.data == {
        "missing": {"cpu": 1.0, "tpu": 1.0},
        "never": {"cpu": "'cpu' has a capacity of 4, less than 5", "tpu": "'tpu' is not a pool"},
    }
    assert _allocated(resources) == {"cpu": 0.0, "gpu": 0.0}


def test_a_pool_can_be_created_and_resized(resources: Ref) -> None:
    define: dict[str, macp.Wire] = {"pool": "tokens", "capacity": 1000}
    assert resources.ask(RESOURCES_DEFINE_POOL, define).get() == {
        "pool": "tokens",
        "capacity": 1000.0,
        "allocated": 0.0,
        "free": 1000.0,
    }
    lease = _allocate(resources, "agent-a", tokens=600)
    shrunk = resources.ask(RESOURCES_DEFINE_POOL, {"pool": "tokens", "capacity": 500}).get()
    assert (shrunk["allocated"], shrunk["free"]) == (600.0, 0.0)  # the lease stays
    with pytest.raises(macp.InsufficientResources, match="'tokens' is short by 1 "):
        _allocate(resources, "agent-b", tokens=1)
    resources.ask(RESOURCES_RELEASE, {"lease_id": lease["lease_id"]}).get()
    assert _allocate(resources, "agent-b", tokens=500)["amounts"] == {"tokens": 500.0}


def test_release_owner_releases_every_lease_and_lock_of_that_owner_only(resources: Ref) -> None:
    a1 = _allocate(resources, "agent-a", cpu=1)
    a2 = _allocate(resources, "agent-a", cpu=1, gpu=1)
    _allocate(resources, "agent-b", cpu=1)
    _lock(resources, "/data/2", "agent-a")
    _lock(resources, "/data/1", "agent-a", ttl_s=60)
    _lock(resources, "/data/3", "agent-b")
    reply = resources.ask(RESOURCES_RELEASE_OWNER, {"owner": "agent-a"}).get()
    assert reply == {
        "released": sorted([a1["lease_id"], a2["lease_id"]]),
        "locks": ["/data/1", "/data/2"],
    }
    assert _allocated(resources) == {"cpu": 1.0, "gpu": 0.0}
    assert not _check(resources, "/data/1")["locked"]
    assert _check(resources, "/data/3")["owner"] == "agent-b"
    again = resources.ask(RESOURCES_RELEASE_OWNER, {"owner": "agent-a"}).get()
    assert again == {"released": [], "locks": []}


class _Traffic:
    """Workers that allocate and release in a loop, and a checker that watches ``usage``.

    Each worker counts what the workers hold between an allocation's reply and its release;
    that count can only exceed a pool's capacity if the manager oversubscribed it.
    """

    def __init__(self, resources: Ref, capacity: dict[str, float]) -> None:
        self.resources = resources
        self.capacity = capacity
        self.held: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.over: list[object] = []
        self.done = threading.Event()

    def allocate(self, owner: str, amounts: dict[str, macp.Wire]) -> Any:
        body: dict[str, macp.Wire] = {"owner": owner, "amounts": amounts}
        while True:
            try:
                return self.resources.ask(RESOURCES_ALLOCATE, body).get()
            except macp.InsufficientResources:
                continue  # more asked than is free right now: nothing taken, try again

    def worker(self, n: int, cycles: int) -> None:
        for i in range(cycles):
            amounts: dict[str, macp.Wire] = {"cpu": 1 + (n + i) % 3}
            if i % 4 == 0:
                amounts["gpu"] = 1
            lease = self.allocate(f"worker-{n}", amounts)
            with self.lock:
                self.held.update(lease["amounts"])
                if any(self.held[pool] > self.capacity[pool] for pool in self.held):
                    self.over.append(dict(self.held))
                self.held.subtract(lease["amounts"])
            release = {"lease_id": lease["lease_id"]}
            assert self.resources.ask(RESOURCES_RELEASE, release).get() == {"released": True}

    def checker(self) -> int:
        checks = 0
        while not self.done.is_set():
            for pool, usage in self.resources.ask(RESOURCES_USAGE).get().items():
                if usage["allocated"] > usage["capacity"]:
                    self.over.append((pool, usage))
            checks += 1
        return checks


def test_concurrent_allocations_never_oversubscribe_a_pool(node: Node, journal_path: Path) -> None:
    capacity = {"cpu": 5.0, "gpu": 2.0}
    config: dict[str, macp.Wire] = {"journal": str(journal_path), "pools": dict(capacity)}
    traffic = _Traffic(node.spawn(ResourceManager, "resources", config=config), capacity)
    with ThreadPoolExecutor(max_workers=9) as pool:
        watching = pool.submit(traffic.checker)
        workers = [pool.submit(traffic.worker, n, 200) for n in range(8)]
        try:
            for worker in workers:
                worker.result(timeout=100)
        finally:
            traffic.done.set()
        assert watching.result(timeout=10) > 0
    assert traffic.over == []
    assert traffic.resources.ask(RESOURCES_USAGE).get() == {
        pool: {"capacity": cap, "allocated": 0.0, "free": cap} for pool, cap in capacity.items()
    }
    with Journal(journal_path) as journal:
        assert journal.leases() == []


# -- path locks -------------------------------------------------------------------------------


def test_a_lock_has_one_owner_until_it_is_released(resources: Ref) -> None:
    reply = _lock(resources, "/data/x", "agent-a")
    assert reply == {"acquired": True, "path": "/data/x", "owner": "agent-a", "expires_at_ms": None}
    assert _check(resources, "/data/x") == {
        "locked": True,
        "path": "/data/x",
        "owner": "agent-a",
        "expires_at_ms": None,
    }
    with pytest.raises(
        macp.ResourceUnavailable,
        match=r"^path '/data/x' is locked by 'agent-a' with no expiry; retry later or ask its "
        r"owner to release it$",
    ) as info:
        _lock(resources, "/data/x", "agent-b")
    assert info.value.data == {"path": "/data/x", "owner": "agent-a", "expires_at_ms": None}
    with pytest.raises(
        macp.ResourceUnavailable,
        match=r"^path '/data/x' is locked by 'agent-a', not 'agent-b'; only its owner may "
        r"release it$",
    ):
        resources.ask(RESOURCES_RELEASE_LOCK, {"path": "/data/x", "owner": "agent-b"}).get()
    release: dict[str, macp.Wire] = {"path": "/data/x", "owner": "agent-a"}
    assert resources.ask(RESOURCES_RELEASE_LOCK, release).get() == {"released": True}
    assert resources.ask(RESOURCES_RELEASE_LOCK, release).get() == {"released": False}
    assert _check(resources, "/data/x") == {
        "locked": False,
        "path": "/data/x",
        "owner": None,
        "expires_at_ms": None,
    }
    assert _lock(resources, "/data/x", "agent-b")["owner"] == "agent-b"


def test_a_conflict_names_the_owner_and_the_time_left(resources: Ref) -> None:
    _lock(resources, "/data/x", "agent-a", ttl_s=30)
    with pytest.raises(
        macp.ResourceUnavailable, match=r"locked by 'agent-a' for (2\d|30)(\.\d+)? s more"
    ) as info:
        _lock(resources, "/data/x", "agent-b")
    expires_at_ms = info.value.data["expires_at_ms"]
    assert isinstance(expires_at_ms, int)
    assert now_ms() < expires_at_ms <= now_ms() + 30_000


def test_the_owner_refreshes_its_lock_by_acquiring_it_again(resources: Ref) -> None:
    first = _lock(resources, "/data/x", "agent-a", ttl_s=0.5)
    wait_until(lambda: now_ms() > first["expires_at_ms"] - 400)
    refreshed = _lock(resources, "/data/x", "agent-a", ttl_s=60)
    assert refreshed["expires_at_ms"] >= first["expires_at_ms"] + 59_000
    assert _lock(resources, "/data/x", "agent-a")["expires_at_ms"] is None  # no TTL: no expiry


def test_an_expired_lock_is_free(resources: Ref) -> None:
    _lock(resources, "/data/x", "agent-a", ttl_s=0.05)
    wait_until(lambda: not _check(resources, "/data/x")["locked"], message="lock never expired")
    assert _lock(resources, "/data/x", "agent-b", ttl_s=60)["owner"] == "agent-b"
    _lock(resources, "/data/y", "agent-a", ttl_s=0.05)
    wait_until(lambda: not _check(resources, "/data/y")["locked"])
    release: dict[str, macp.Wire] = {
        "path": "/data/y",
        "owner": "agent-b",
    }  # not the owner, but the lock is gone
    assert resources.ask(RESOURCES_RELEASE_LOCK, release).get() == {"released": False}


# -- persistence ------------------------------------------------------------------------------


def test_pools_leases_and_locks_survive_a_restart(node: Node, journal_path: Path) -> None:
    config: dict[str, macp.Wire] = {"journal": str(journal_path), "pools": {"cpu": 4}}
    resources = node.spawn(ResourceManager, "resources", config=config)
    resources.ask(RESOURCES_DEFINE_POOL, {"pool": "gpu", "capacity": 2}).get()
    lease = _allocate(resources, "agent-a", cpu=3, gpu=1)
    _lock(resources, "/data/kept", "agent-a")
    _lock(resources, "/data/short", "agent-a", ttl_s=0.05)
    assert node.terminate("resources")
    wait_until(lambda: now_ms() > _lock_expiry(journal_path, "/data/short"))
    resources = node.spawn(ResourceManager, "resources", config={"journal": str(journal_path)})
    assert resources.ask(RESOURCES_USAGE).get() == {
        "cpu": {"capacity": 4.0, "allocated": 3.0, "free": 1.0},
        "gpu": {"capacity": 2.0, "allocated": 1.0, "free": 1.0},
    }
    assert _check(resources, "/data/kept")["owner"] == "agent-a"
    assert not _check(resources, "/data/short")["locked"]
    with Journal(journal_path) as journal:
        assert [lock["path"] for lock in journal.locks()] == ["/data/kept"]
    with pytest.raises(macp.InsufficientResources, match="'cpu' is short by 1"):
        _allocate(resources, "agent-b", cpu=2)
    released = resources.ask(RESOURCES_RELEASE, {"lease_id": lease["lease_id"]}).get()
    assert released == {"released": True}
    assert _allocated(resources) == {"cpu": 0.0, "gpu": 0.0}


def _lock_expiry(path: Path, lock_path: str) -> int:
    with Journal(path) as journal:
        (expiry,) = [lock["expires_at_ms"] for lock in journal.locks() if lock["path"] == lock_path]
    assert isinstance(expiry, int)
    return expiry


def test_a_crashed_manager_is_restarted_with_its_leases(node: Node, journal_path: Path) -> None:
    config: dict[str, macp.Wire] = {"journal": str(journal_path), "pools": {"gpu": 2}}
    resources = node.spawn(CrashingResources, "resources", config=config)
    _allocate(resources, "agent-a", gpu=2)
    with pytest.raises(macp.AgentError, match="RuntimeError: crashed on purpose"):
        resources.ask("crash").get()
    wait_until(lambda: node.children()[0]["restarts"] == 1, message="the manager did not restart")
    with pytest.raises(macp.InsufficientResources, match="'gpu' is short by 1 "):
        _allocate(resources, "agent-b", gpu=1)
    assert resources.ask(RESOURCES_RELEASE_OWNER, {"owner": "agent-a"}).get()["locks"] == []
    assert _allocated(resources) == {"gpu": 0.0}


def test_configured_pools_override_the_journal_at_start(node: Node, journal_path: Path) -> None:
    with Journal(journal_path) as journal:
        journal.put_pool("cpu", 2)
        journal.put_pool("disk", 100)
    config: dict[str, macp.Wire] = {"journal": str(journal_path), "pools": {"cpu": 16}}
    resources = node.spawn(ResourceManager, "resources", config=config)
    usage = resources.ask(RESOURCES_USAGE).get()
    assert {pool: u["capacity"] for pool, u in usage.items()} == {"cpu": 16.0, "disk": 100.0}


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "body", "message"),
    [
        (RESOURCES_ALLOCATE, None, "resources.allocate takes a map body, not None"),
        (
            RESOURCES_ALLOCATE,
            {"amounts": {"cpu": 1}},
            "resources.allocate needs 'owner' as a non-empty string, got nothing; set it in",
        ),
        (
            RESOURCES_ALLOCATE,
            {"owner": "a", "amounts": {}},
            r"resources.allocate needs 'amounts' as a non-empty map of pool to amount, got \{\}",
        ),
        (
            RESOURCES_ALLOCATE,
            {"owner": "a", "amounts": {"cpu": 0}},
            "resources.allocate needs 'amounts.cpu' to be a number > 0, got 0; leave out",
        ),
        (
            RESOURCES_ALLOCATE,
            {"owner": "a", "amounts": {"cpu": True}},
            "needs 'amounts.cpu' to be a number > 0, got True",
        ),
        (
            RESOURCES_DEFINE_POOL,
            {"pool": "gpu", "capacity": -1},
            "resources.define_pool 'capacity' must be a number >= 0, got -1; use e.g. 4",
        ),
        (
            RESOURCES_DEFINE_POOL,
            {"capacity": 1},
            "resources.define_pool needs 'pool' as a non-empty string, got nothing",
        ),
        (RESOURCES_RELEASE, {"lease_id": 7}, "resources.release needs 'lease_id' as a non-empty"),
        (RESOURCES_RELEASE_OWNER, {}, "resources.release_owner needs 'owner' as a non-empty"),
        (
            RESOURCES_ACQUIRE_LOCK,
            {"path": "/x", "owner": "a", "ttl_s": -1},
            "resources.acquire_lock needs 'ttl_s' as a positive number of seconds or null, got -1",
        ),
        (RESOURCES_ACQUIRE_LOCK, {"path": "/x"}, "resources.acquire_lock needs 'owner' as a"),
        (RESOURCES_RELEASE_LOCK, {"owner": "a"}, "resources.release_lock needs 'path' as a"),
        (RESOURCES_CHECK_LOCK, {"path": ""}, "resources.check_lock needs 'path' as a non-empty"),
    ],
)
def test_bad_input_names_the_field_and_the_fix(
    resources: Ref, type_: str, body: macp.Wire, message: str
) -> None:
    with pytest.raises(macp.InvalidParams, match=message):
        resources.ask(type_, body).get()
    assert _allocated(resources) == {"cpu": 0.0, "gpu": 0.0}  # nothing taken; still alive
