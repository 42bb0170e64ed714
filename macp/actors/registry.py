"""The Registry actor: which agents exist, where, what they can do, and how they are doing.

Nodes keep it current (see :mod:`macp.node._registrar`): each heartbeat carries its agents' status
and load (and how many messages each took: a record's ``messages``), and their full records
whenever the node's set of agents changed. An agent whose node goes down is ``offline``.
Subscribers (the coordinator, the resource manager) are told every change as a
``registry.changed`` event whose body is the agent's record (``status: "gone"`` when it was
removed).

Statuses: ``available`` (idle), ``busy`` (working or with queued work), ``paused``,
``offline`` (stopped, or its node is down), ``error`` (crashed, restarting).
"""

from __future__ import annotations

from typing import Any, Final

from macp._storable import is_number
from macp.actors.agent import Agent, handler
from macp.envelope import Wire, new_id, now_ms
from macp.errors import InvalidParams

__all__ = [
    "CHANGED",
    "CONTROL_PLANE",
    "DEREGISTER",
    "FIND",
    "GONE",
    "HEARTBEAT",
    "LIST",
    "LOOKUP",
    "REGISTER",
    "ROUTABLE",
    "SCORES",
    "SUBSCRIBE",
    "Registry",
]

CONTROL_PLANE: Final = "control-plane"
"""The group of the control-plane actors; ``all`` in control commands leaves them out."""
REGISTER: Final = "registry.register"
DEREGISTER: Final = "registry.deregister"
HEARTBEAT: Final = "registry.heartbeat"
FIND: Final = "registry.find"
LOOKUP: Final = "registry.lookup"
LIST: Final = "registry.list"
SUBSCRIBE: Final = "registry.subscribe"
CHANGED: Final = "registry.changed"
SCORES: Final = "registry.scores"
GONE: Final = "gone"
ROUTABLE: Final = frozenset({"available", "busy"})
_STATUSES: Final = frozenset({"available", "busy", "paused", "offline", "error"})
_RECORD_FIELDS: Final = (
    "address",
    "name",
    "node",
    "role",
    "group",
    "capabilities",
    "handles",
    "incarnation",
    "model",
    "model_type",
    "model_version",
    "metadata",
)
_FILTERS: Final = ("role", "group", "node", "model_type", "model_version")


def _field(body: Any, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    value = body.get(name) if isinstance(body, dict) else None
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        expected = (
            kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        )
        raise InvalidParams(f"{name!r} must be a {expected}, not {value!r:.60}")
    return value


def _record(raw: Any) -> dict[str, Any]:
    """A registration record checked and completed."""
    address = _field(raw, "address", str)
    name, _, node = address.partition("@")
    if not name or not node:
        raise InvalidParams(f"'address' must be name@node, not {address!r}")
    capabilities = _field(raw, "capabilities", list, required=False) or []
    if not all(isinstance(c, str) for c in capabilities):
        raise InvalidParams("'capabilities' must be a list of strings")
    for model_field in ("model_type", "model_version"):
        _field(raw, model_field, str, required=False)
    record = {k: raw.get(k) for k in _RECORD_FIELDS}
    record.update(address=address, name=name, node=node, capabilities=sorted(capabilities))
    record.setdefault("metadata", {})
    return record


class Registry(Agent):
    """The cluster's registry of agents (one, on the head node, named ``registry``)."""

    capabilities = ("registry",)
    group = CONTROL_PLANE

    def on_start(self) -> None:
        self.agents: dict[str, dict[str, Any]] = {}
        self.node_versions: dict[str, tuple[str, int]] = {}
        self.subscribers: set[str] = set()
        self.generation = 0
        self.incarnation = new_id()
        self.scores: dict[str, dict[str, Any]] = {}  # by address, from the evaluations actor
        self.subscribe("node.down", "node.up")

    # -- keeping it current -------------------------------------------------------------------

    @handler(HEARTBEAT)
    def heartbeat(self, body: Wire) -> Wire:
        """A node's agents' status ``{name: [status, load]}`` and ``messages`` ``{name: count}``
        (taken since each started; optional), with the full ``records`` when its set changed;
        answers whether the node must send its records again."""
        node = _field(body, "node", str)
        incarnation = _field(body, "incarnation", str)
        version = _field(body, "version", int)
        statuses = _field(body, "agents", dict)
        assert isinstance(body, dict)
        if "records" in body:
            self._replace_node(node, [_record(r) for r in _field(body, "records", list)])
            self.node_versions[node] = (incarnation, version)
        elif self.node_versions.get(node) != (incarnation, version):
            return {"resync": True, "generation": self.generation}
        counts = body.get("messages")
        if not isinstance(counts, dict):
            counts = {}
        now = now_ms()
        for name, value in statuses.items():
            record = self.agents.get(f"{name}@{node}")
            if record is None or not isinstance(value, list) or len(value) != 2:  # noqa: PLR2004
                continue
            status, load = value
            record["last_heartbeat_ms"] = now
            record["load"] = load if isinstance(load, int) else 0
            taken = counts.get(name)
            if isinstance(taken, int) and not isinstance(taken, bool):
                record["messages"] = taken
            if status in _STATUSES and status != record["status"]:
                record["status"] = status
                self._changed(record)
        return {"resync": False, "generation": self.generation}

    def _replace_node(self, node: str, records: list[dict[str, Any]]) -> None:
        fresh = {r["address"]: r for r in records}
        for address in [a for a, r in self.agents.items() if r["node"] == node]:
            if address not in fresh:
                self._remove(address)
        now = now_ms()
        for address, record in fresh.items():
            old = self.agents.get(address)
            record["status"] = old["status"] if old and old["status"] != "offline" else "available"
            record["load"] = old["load"] if old else 0
            record["messages"] = old.get("messages", 0) if old else 0
            record["registered_ms"] = old["registered_ms"] if old else now
            record["last_heartbeat_ms"] = now
            record.update(self._score(address))
            changed = old is None or any(old.get(k) != record.get(k) for k in _RECORD_FIELDS)
            self.agents[address] = record
            if changed:
                self.generation += 1
            if changed or old["status"] != record["status"]:  # type: ignore[index]
                self._changed(record)

    def _remove(self, address: str) -> None:
        self.subscribers.discard(address)
        record = self.agents.pop(address, None)
        if record is not None:
            self.generation += 1
            self._changed({**record, "status": GONE})

    def _changed(self, record: dict[str, Any]) -> None:
        for subscriber in list(self.subscribers):
            self.tell(subscriber, CHANGED, record)

    @handler(REGISTER)
    def register(self, body: Wire) -> Wire:
        """Register one agent explicitly (agents of macp nodes are registered by their node)."""
        record = _record(body)
        self._replace_node_one(record)
        return {"ok": True, "generation": self.generation}

    def _replace_node_one(self, record: dict[str, Any]) -> None:
        old = self.agents.get(record["address"])
        record.update(
            status="available", load=0, messages=0, last_heartbeat_ms=now_ms(),
            registered_ms=old["registered_ms"] if old else now_ms(),
            **self._score(record["address"]),
        )  # fmt: skip
        self.agents[record["address"]] = record
        self.generation += 1
        self._changed(record)

    def _score(self, address: str) -> dict[str, Any]:
        return self.scores.get(address) or {"performance_score": None, "evaluations": 0}

    @handler(SCORES)
    def set_scores(self, body: Wire) -> Wire:
        """Agents' ``scores`` ``{address: {performance_score, evaluations}}`` from the
        evaluations actor (all of them with ``replace``), shown in their records; answers this
        registry's ``incarnation`` (a new one has none: they are sent again)."""
        scores = _field(body, "scores", dict)
        assert isinstance(body, dict)
        if body.get("replace") is True:
            self.scores.clear()
        for address, score in scores.items():
            value = score.get("performance_score") if isinstance(score, dict) else "?"
            if value is not None and not is_number(value):
                raise InvalidParams(
                    f"scores[{address!r}] must be {{performance_score, evaluations}}"
                )
            self.scores[address] = {"performance_score": value,
                                    "evaluations": int(score.get("evaluations") or 0)}  # fmt: skip
        for address, record in self.agents.items():
            fresh = self._score(address)
            if any(record.get(k) != v for k, v in fresh.items()):
                record.update(fresh)
                self._changed(record)
        return {"incarnation": self.incarnation}

    @handler(DEREGISTER)
    def deregister(self, body: Wire) -> Wire:
        address = _field(body, "address", str)
        found = address in self.agents
        self._remove(address)
        return {"removed": found}

    @handler("node.down")
    def node_down(self, body: dict[str, Any]) -> None:
        """Every agent of a node that went down is offline until the node comes back."""
        node = body.get("node")
        self.node_versions.pop(str(node), None)  # it re-sends its records when it is back
        for record in self.agents.values():
            if record["node"] == node and record["status"] != "offline":
                record["status"] = "offline"
                self._changed(record)

    @handler("node.up")
    def node_up(self, _body: Wire) -> None:
        """Nothing to do: the node's next heartbeat brings its agents back."""

    # -- questions ----------------------------------------------------------------------------

    @handler(FIND)
    def find(self, body: Wire) -> Wire:
        """Agents matching every filter given: ``capabilities`` (all required), ``role``,
        ``status`` (one or a list), ``group``, ``node``, ``model_type``, ``model_version``,
        ``active_within_s``; least loaded first."""
        body = body or {}
        wanted = set(_field(body, "capabilities", list, required=False) or [])
        status = _field(body, "status", (str, list), required=False)
        statuses = {status} if isinstance(status, str) else set(status or [])
        filters = {k: _field(body, k, str, required=False) for k in _FILTERS}
        within = _field(body, "active_within_s", (int, float), required=False)
        oldest = now_ms() - int(within * 1000) if within is not None else None
        found = [
            r
            for r in self.agents.values()
            if wanted <= set(r["capabilities"])
            and (not statuses or r["status"] in statuses)
            and all(v is None or r.get(k) == v for k, v in filters.items())
            and (oldest is None or r["last_heartbeat_ms"] >= oldest)
        ]
        found.sort(key=lambda r: (r["load"], r["address"]))
        return found

    @handler(LOOKUP)
    def lookup(self, body: Wire) -> Wire:
        """The address of the best routable agent called ``name`` (any node), or ``None``."""
        name = _field(body, "name", str)
        candidates = [r for r in self.agents.values() if r["name"] == name]
        candidates.sort(key=lambda r: (r["status"] not in ROUTABLE, r["load"], r["address"]))
        return candidates[0]["address"] if candidates else None

    @handler(LIST)
    def list_agents(self, _body: Wire) -> Wire:
        return sorted(self.agents.values(), key=lambda r: r["address"])

    @handler(SUBSCRIBE)
    def add_subscriber(self, body: Wire) -> Wire:
        """Tell ``address`` every change from now on. Answers ``{incarnation, records}``: every
        record as of now, or ``None`` if the subscriber already knows this incarnation of the
        registry (it subscribes again from time to time, to find out it restarted)."""
        self.subscribers.add(_field(body, "address", str))
        if _field(body, "incarnation", str, required=False) == self.incarnation:
            return {"incarnation": self.incarnation, "records": None}
        records = sorted(self.agents.values(), key=lambda r: r["address"])
        return {"incarnation": self.incarnation, "records": records}
