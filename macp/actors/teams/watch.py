"""The registry as the teams actors see it: every agent's record, kept current by the
registry's ``registry.changed`` events, re-read whenever the registry restarted."""

from __future__ import annotations

from typing import Any

from macp.actors.registry import GONE, ROUTABLE
from macp.actors.teams.messages import PARTICIPANT_OFFLINE, PARTICIPANT_ONLINE
from macp.actors.teams.session import Presence
from macp.errors import InvalidParams

__all__ = ["DOWN", "RegistryView", "check_address", "presence_of"]

DOWN = frozenset({"offline", GONE})
"""The statuses that make a participant offline: its node is down, or it is gone."""


def presence_of(status: str) -> tuple[Presence, str] | None:
    """What a registry status makes a participant, and what its coordinator is told: offline
    (down or gone), active again (available or busy), or ``None`` (no change: paused, error)."""
    if status in DOWN:
        return Presence.OFFLINE, PARTICIPANT_OFFLINE
    if status in ROUTABLE:
        return Presence.ACTIVE, PARTICIPANT_ONLINE
    return None


def check_address(field: str, value: object) -> str:
    """``value`` as an agent address ``name@node``.

    Raises:
        InvalidParams: it is not one (the message names ``field``).
    """
    name, _, node = value.partition("@") if isinstance(value, str) else ("", "", "")
    if not isinstance(value, str) or not name or not node or "@" in node:
        raise InvalidParams(
            f"{field} {value!r:.60} must be an agent address name@node; agent_list names the agents"
        )
    return value


class RegistryView:
    """The registry's records by address (a copy, updated from the actor's thread)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.incarnation: str | None = None

    def replace(self, records: list[dict[str, Any]]) -> None:
        self.records = {r["address"]: r for r in records if isinstance(r, dict)}

    def update(self, record: dict[str, Any]) -> None:
        address = record.get("address")
        if not isinstance(address, str):
            return
        if record.get("status") == GONE:
            self.records.pop(address, None)
        else:
            self.records[address] = record

    def handles(self, address: str, type_: str) -> bool:
        """Whether the agent declares a handler for ``type_`` (by its registry record)."""
        record = self.records.get(address)
        return record is not None and type_ in (record.get("handles") or ())

    def down(self, address: str) -> bool:
        """Whether the agent is offline or unknown to the registry."""
        record = self.records.get(address)
        return record is None or record.get("status") in DOWN

    def routable(self, address: str) -> bool:
        record = self.records.get(address)
        return record is not None and record.get("status") in ROUTABLE

    def capable(self, capabilities: list[str], among: list[str] | None = None) -> list[str]:
        """The routable agents with every one of ``capabilities`` (of ``among`` if given),
        least loaded first."""
        wanted = set(capabilities)
        found = [
            r
            for address, r in self.records.items()
            if (among is None or address in among)
            and r.get("status") in ROUTABLE
            and wanted <= set(r.get("capabilities") or ())
        ]
        found.sort(key=lambda r: (r.get("load") or 0, r["address"]))
        return [r["address"] for r in found]
