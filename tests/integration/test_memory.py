"""The MemoryStore actor on a real node and a real journal file: TTL, purge, restarts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from agents import CrashesOnRequest

import macp
from macp.actors.memory import (
    MEMORY_DELETE,
    MEMORY_GET,
    MEMORY_LIST,
    MEMORY_PURGE,
    MEMORY_PUT,
    MemoryStore,
)
from macp.envelope import now_ms
from macp.store import Journal
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp import Node, Ref

pytestmark = pytest.mark.integration


class CrashingMemory(CrashesOnRequest, MemoryStore):
    """Dies on ``crash``."""


@pytest.fixture
def memory(node: Node, journal_path: Path) -> Ref:
    return node.spawn(MemoryStore, "memory", config={"journal": str(journal_path)})


def _put(ref: Ref, key: str, value: macp.Wire, ttl_s: float | None = None) -> Any:
    body = {"namespace": "notes", "key": key, "value": value, "ttl_s": ttl_s}
    return ref.ask(MEMORY_PUT, body).get()


def _get(ref: Ref, key: str, namespace: str = "notes") -> Any:
    return ref.ask(MEMORY_GET, {"namespace": namespace, "key": key}).get()


def _keys(ref: Ref, prefix: str | None = None, namespace: str = "notes") -> Any:
    body: dict[str, macp.Wire] = {"namespace": namespace}
    if prefix is not None:
        body["prefix"] = prefix
    return ref.ask(MEMORY_LIST, body).get()["keys"]


def test_put_get_delete_and_list(memory: Ref) -> None:
    assert _put(memory, "b", {"text": "hello", "n": [1, 2]}) == {"ok": True, "expires_at_ms": None}
    _put(memory, "a", None)
    _put(memory, "c/1", b"\x00")
    memory.ask(MEMORY_PUT, {"namespace": "other", "key": "a", "value": 1}).get()
    assert _get(memory, "b") == {
        "found": True,
        "value": {"text": "hello", "n": [1, 2]},
        "expires_at_ms": None,
    }
    assert _get(memory, "a") == {"found": True, "value": None, "expires_at_ms": None}
    assert _get(memory, "zzz") == {"found": False, "value": None, "expires_at_ms": None}
    assert _get(memory, "a", namespace="other")["value"] == 1
    assert _keys(memory) == ["a", "b", "c/1"]
    assert _keys(memory, prefix="c/") == ["c/1"]
    assert _keys(memory, namespace="empty") == []
    assert memory.ask(MEMORY_DELETE, {"namespace": "notes", "key": "b"}).get() == {"deleted": True}
    assert memory.ask(MEMORY_DELETE, {"namespace": "notes", "key": "b"}).get() == {"deleted": False}
    assert _keys(memory) == ["a", "c/1"]
    _put(memory, "a", "replaced")
    assert _get(memory, "a")["value"] == "replaced"


def test_a_stored_value_is_a_copy_even_without_the_strict_setting(
    make_node: Callable[..., Node], journal_path: Path
) -> None:
    node = make_node("loose", settings=macp.Settings(strict=False))
    memory = node.spawn(MemoryStore, "memory", config={"journal": str(journal_path)})
    value: dict[str, macp.Wire] = {"items": [1, 2]}
    _put(memory, "k", value)
    value["items"] = "changed by the caller"
    got = _get(memory, "k")["value"]
    assert got == {"items": [1, 2]}
    got["items"].append(3)
    assert _get(memory, "k")["value"] == {"items": [1, 2]}


def test_every_write_is_in_the_journal_when_the_reply_arrives(
    memory: Ref, journal_path: Path
) -> None:
    _put(memory, "k", [1, 2, 3], ttl_s=60)
    with Journal(journal_path) as journal:
        stored = journal.get_memory("notes", "k")
        assert stored is not None
        assert stored[0] == [1, 2, 3]
        memory.ask(MEMORY_DELETE, {"namespace": "notes", "key": "k"}).get()
        assert journal.get_memory("notes", "k") is None


def test_an_expired_key_is_gone_for_get_list_and_delete(memory: Ref) -> None:
    before = now_ms()
    reply = _put(memory, "short", "soon gone", ttl_s=0.05)
    _put(memory, "long", "stays", ttl_s=60)
    assert before + 50 <= reply["expires_at_ms"] <= now_ms() + 50
    wait_until(lambda: not _get(memory, "short")["found"], message="the key did not expire")
    assert _keys(memory) == ["long"]
    assert memory.ask(MEMORY_DELETE, {"namespace": "notes", "key": "short"}).get() == {
        "deleted": False
    }
    assert _get(memory, "long")["value"] == "stays"


def test_a_new_put_without_ttl_keeps_a_key_that_had_one(memory: Ref) -> None:
    _put(memory, "k", 1, ttl_s=0.05)
    _put(memory, "k", 2)
    _put(memory, "marker", 0, ttl_s=0.05)
    wait_until(lambda: not _get(memory, "marker")["found"])
    assert memory.ask(MEMORY_PURGE).get() == {"purged": 1}
    assert _get(memory, "k") == {"found": True, "value": 2, "expires_at_ms": None}


def test_the_purge_timer_deletes_expired_keys_from_the_journal(
    node: Node, journal_path: Path
) -> None:
    config: dict[str, macp.Wire] = {"journal": str(journal_path), "purge_interval_s": 0.05}
    memory = node.spawn(MemoryStore, "memory", config=config)
    _put(memory, "short", 1, ttl_s=0.05)
    _put(memory, "long", 2, ttl_s=60)
    with Journal(journal_path) as journal:
        assert [k for k, _, _ in journal.memory_items("notes")] == ["long", "short"]
        wait_until(
            lambda: [k for k, _, _ in journal.memory_items("notes")] == ["long"],
            message="the expired key was not purged from the journal",
        )


def test_a_restarted_store_has_the_old_data_but_not_the_expired_keys(
    node: Node, journal_path: Path
) -> None:
    config: dict[str, macp.Wire] = {"journal": str(journal_path)}
    memory = node.spawn(MemoryStore, "memory", config=config)
    _put(memory, "kept", {"v": 1})
    _put(memory, "short", 2, ttl_s=0.05)
    _put(memory, "deleted", 3)
    memory.ask(MEMORY_DELETE, {"namespace": "notes", "key": "deleted"}).get()
    assert node.terminate("memory")
    wait_until(lambda: now_ms() > _expiry(journal_path, "short"))
    memory = node.spawn(MemoryStore, "memory", config=config)
    assert _keys(memory) == ["kept"]
    assert _get(memory, "kept")["value"] == {"v": 1}
    assert not _get(memory, "short")["found"]


def _expiry(path: Path, key: str) -> int:
    with Journal(path) as journal:
        stored = journal.get_memory("notes", key)
    assert stored is not None
    assert stored[1] is not None
    return stored[1]


def test_a_crashed_store_is_restarted_with_its_data(node: Node, journal_path: Path) -> None:
    memory = node.spawn(CrashingMemory, "memory", config={"journal": str(journal_path)})
    _put(memory, "k", "survives")
    with pytest.raises(macp.AgentError, match="RuntimeError: crashed on purpose"):
        memory.ask("crash").get()
    wait_until(lambda: node.children()[0]["restarts"] == 1, message="the store was not restarted")
    assert _get(memory, "k") == {"found": True, "value": "survives", "expires_at_ms": None}
    _put(memory, "after", 1)
    assert _keys(memory) == ["after", "k"]


def test_two_control_plane_actors_can_share_one_journal_file(
    node: Node, journal_path: Path
) -> None:
    config: dict[str, macp.Wire] = {"journal": str(journal_path)}
    first = node.spawn(MemoryStore, "memory-1", config=config)
    second = node.spawn(MemoryStore, "memory-2", config=config)
    for i in range(20):
        _put(first, f"first-{i}", i)
        _put(second, f"second-{i}", i)
    with Journal(journal_path) as journal:
        assert len(journal.memory_items("notes")) == 40


def test_the_default_journal_is_under_the_data_dir(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MACP_DATA_DIR", str(tmp_path / "data"))
    memory = node.spawn(MemoryStore, "memory")
    _put(memory, "k", 1)
    with Journal(tmp_path / "data" / "test" / "journal.sqlite3") as journal:
        assert journal.get_memory("notes", "k") == (1, None)


@pytest.mark.parametrize(
    ("type_", "body", "message"),
    [
        (MEMORY_PUT, [1], r"memory.put takes a map body, not \[1\]"),
        (
            MEMORY_PUT,
            {"key": "k", "value": 1},
            "memory.put needs 'namespace' as a non-empty string, got nothing; set it in the body",
        ),
        (
            MEMORY_PUT,
            {"namespace": "n", "key": 7, "value": 1},
            "memory.put needs 'key' as a non-empty string, got 7; set it in the body",
        ),
        (
            MEMORY_PUT,
            {"namespace": "n", "key": "k"},
            r"memory.put needs 'value' \(any msgpack data, null included\); add it to the body",
        ),
        (
            MEMORY_PUT,
            {"namespace": "n", "key": "k", "value": 1, "ttl_s": 0},
            "memory.put needs 'ttl_s' as a positive number of seconds or null, got 0; use e.g.",
        ),
        (
            MEMORY_PUT,
            {"namespace": "n", "key": "k", "value": 1, "ttl_s": "1"},
            "memory.put needs 'ttl_s' as a positive number of seconds or null, got '1'",
        ),
        (MEMORY_GET, {"namespace": "", "key": "k"}, "memory.get needs 'namespace' as a non-empty"),
        (MEMORY_DELETE, {"namespace": "n"}, "memory.delete needs 'key' as a non-empty string"),
        (
            MEMORY_LIST,
            {"namespace": "n", "prefix": None},
            "memory.list needs 'prefix' as a string, got None; set it in the body",
        ),
    ],
)
def test_bad_input_names_the_field_and_the_fix(
    memory: Ref, type_: str, body: macp.Wire, message: str
) -> None:
    with pytest.raises(macp.InvalidParams, match=message):
        memory.ask(type_, body).get()
    assert _keys(memory) == []  # nothing was stored, and the store lives on
