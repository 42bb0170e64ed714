"""The gateway's events: one hub per gateway, fed by the runtime's own changes of state.

The hub's feed is one agent on the gateway's member node (:class:`~._feed.Feed`): it holds
the coordinator's task-events lease (``tasks.subscribe``), the registry's subscription
(``registry.changed``) and the monitor's (``alert``), and hands each change to the hub, which
makes it an :class:`Event` and offers it to every client. No client polls anything: an event
exists once, whoever reads it.

Events (``{"type", "timestamp", "data"}``, ``timestamp`` ISO 8601 UTC from the change's own
time when it has one):

- ``task_update``: a task's change of state, the coordinator's ``task.event`` as it is
  (``task_id, state, previous, time_ms, type, attempt?, agent?, error?, run?, step?``);
- ``pipeline_progress``: a workflow run's step moved (``run_id, step, task_id, state``), and,
  when a step's task ends, where the run is (``run_id, workflow, state, steps_done,
  steps_total, progress``). Runs have no events of their own: this is derived from their
  steps' task events, and the run's state is read once per step that ends;
- ``agent_update``: an agent's registry record changed (``address, name, node, status, load,
  capabilities, role, group``; ``status`` ``gone`` when it was removed). The control plane's
  own actors are left out;
- ``alert``: a monitor rule fired or resolved (``rule, metric, value, op, threshold, state``);
- ``error``: told to one client only (a message it sent that the gateway could not take).

Each client (:class:`Subscription`) sees the topics it subscribed to, filtered by what its
principal may see (:func:`visible`), through a buffer of its own, bounded: a client that
falls :attr:`EventHub.buffer` events behind is closed (:data:`SLOW_CLOSE_CODE`) and counted in
:attr:`EventHub.dropped`, so a slow reader never holds up the hub or another client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from macp.actors.coordinator.messages import WORKFLOW_STATUS
from macp.errors import InvalidParams, MacpError
from macp.gateway.guard import Role
from macp.gateway.http._feed import Feed
from macp.gateway.table import Scope
from macp.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from macp.gateway.bridge import Runtime
    from macp.gateway.guard import Principal
    from macp.gateway.member import Member

__all__ = [
    "DEFAULT_BUFFER",
    "SLOW_CLOSE_CODE",
    "TOPICS",
    "Event",
    "EventHub",
    "Subscription",
    "visible",
]

TOPICS: Final = ("task_update", "pipeline_progress", "agent_update", "alert", "error")
"""The event types a client may subscribe to."""
_READS: Final = {
    "task_update": Scope.TASKS_READ, "pipeline_progress": Scope.WORKFLOWS_READ,
    "agent_update": Scope.AGENTS_READ, "alert": Scope.SYSTEM_READ,
}  # fmt: skip
"""The scope a principal must hold to see each type of event (``error`` is everyone's)."""
DEFAULT_BUFFER: Final = 1000
"""Events a client may fall behind by before it is closed."""
SLOW_CLOSE_CODE: Final = 4408
"""The WebSocket close code of a client closed for reading too slowly."""
FEED_NAME: Final = "gateway-events"
"""The feed agent's name on the gateway's member node."""

_STEP_ENDED: Final = frozenset({"succeeded", "failed", "cancelled"})
_STEP_RESOLVED: Final = frozenset({"succeeded", "failed", "skipped", "replaced", "cancelled"})
_log = get_logger("macp.gateway.events")


def _iso(time_ms: int | None) -> str:
    when = datetime.now(UTC) if time_ms is None else datetime.fromtimestamp(time_ms / 1000, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Event:
    """One event, as a client receives it: its ``type`` (a topic), ``timestamp``, ``data``."""

    type: str
    timestamp: str
    data: Mapping[str, Any]

    @classmethod
    def of(cls, type: str, data: Mapping[str, Any], time_ms: int | None = None) -> Event:
        """An event stamped with ``time_ms`` (milliseconds since the epoch), or now."""
        return cls(type, _iso(time_ms), data)

    def to_json(self) -> str:
        return json.dumps({"type": self.type, "timestamp": self.timestamp, "data": self.data},
                          default=str)  # fmt: skip


def visible(principal: Principal, event: Event) -> bool:
    """Whether ``principal`` may see ``event``: a role that reads (viewer, operator, admin)
    sees everything; an ``agent`` principal only the tasks and the registry record of the
    agent it is (its name is the agent's name, or its address ``name@node``)."""
    if principal.role is not Role.AGENT:
        scope = _READS.get(event.type)
        return scope is None or principal.may(scope)
    if event.type == "error":
        return True
    if event.type not in {"task_update", "agent_update"}:
        return False
    field = "agent" if event.type == "task_update" else "address"
    address = event.data.get(field)
    return isinstance(address, str) and principal.name in {address, address.partition("@")[0]}


class Subscription:
    """One client of the hub: its principal, its topics and its bounded buffer.

    Made by :meth:`EventHub.subscribe`; read with :meth:`next` on the hub's loop.
    """

    def __init__(
        self, hub: EventHub, principal: Principal, topics: Iterable[str], limit: int
    ) -> None:
        self.hub = hub
        self.principal = principal
        self.topics: set[str] = set()
        self.limit = limit
        self.overflow: str | None = None
        """Why it was dropped (it fell ``limit`` events behind), once it was."""
        self._buffer: deque[Event] = deque()
        self._waiting = asyncio.Event()
        self.add(topics)

    @staticmethod
    def topics_of(topics: object) -> list[str]:
        """``topics`` checked: a list of names among :data:`TOPICS`.

        Raises:
            InvalidParams: not a list of strings, or a name not among them (it is named).
        """
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise InvalidParams(f"'topics' must be a list of topic names among {list(TOPICS)}")
        unknown = [t for t in topics if t not in TOPICS]
        if unknown:
            raise InvalidParams(f"unknown topic {unknown[0]!r}: the topics are {list(TOPICS)}")
        return topics

    def add(self, topics: Iterable[str]) -> None:
        self.topics.update(topics)

    def remove(self, topics: Iterable[str]) -> None:
        self.topics.difference_update(topics)

    def offer(self, event: Event) -> None:
        """Buffer ``event`` if this client wants it and may see it (on the hub's loop)."""
        if self.overflow is not None or event.type not in self.topics:
            return
        if not visible(self.principal, event):
            return
        if len(self._buffer) >= self.limit:
            self.overflow = (
                f"too slow: {self.limit} events were waiting to be read; reconnect and read "
                "faster, or subscribe to fewer topics"
            )
            self._buffer.clear()
            self.hub.dropped += 1
            _log.info("gateway.events.slow_reader", principal=self.principal.name,
                      limit=self.limit)  # fmt: skip
        else:
            self._buffer.append(event)
        self._waiting.set()

    def tell(self, event: Event) -> None:
        """Buffer ``event`` for this client whatever its topics (its own ``error`` events)."""
        if self.overflow is None:
            self._buffer.append(event)
            self._waiting.set()

    async def next(self) -> Event | None:
        """The next event, once there is one; ``None`` once the client fell :attr:`limit`
        events behind (:attr:`overflow` says so: it is to be closed)."""
        while not self._buffer and self.overflow is None:
            self._waiting.clear()
            await self._waiting.wait()
        if self.overflow is not None:
            return None
        return self._buffer.popleft()

    def close(self) -> None:
        self.hub.unsubscribe(self)


class EventHub:
    """The gateway's one source of events, offered to every :class:`Subscription`.

    Args:
        runtime: the gateway's runtime (a run's state is read through it).
        buffer: events a client may fall behind by before it is closed.

    Attributes:
        dropped: clients closed for reading too slowly.
        published: events offered to the clients.
    """

    def __init__(self, runtime: Runtime, *, buffer: int = DEFAULT_BUFFER) -> None:
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise InvalidParams(f"the event buffer must be a count of events >= 1, not {buffer!r}")
        self.runtime = runtime
        self.buffer = buffer
        self.dropped = 0
        self.published = 0
        self._clients: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._member: Member | None = None
        self._runs: set[asyncio.Task[None]] = set()

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def start(self, member: Member, *, timeout_s: float = 10.0) -> None:
        """Feed the hub: start its feed agent on ``member``'s node; return once the coordinator
        has taken its task-events lease.

        Raises:
            AskTimeout: the coordinator did not take it within ``timeout_s``.
        """
        self._loop = asyncio.get_running_loop()
        self._member = member
        subscribed = threading.Event()
        await asyncio.to_thread(member.node.spawn, Feed, FEED_NAME, hub=self, subscribed=subscribed)
        if not await asyncio.to_thread(subscribed.wait, timeout_s):
            from macp.errors import AskTimeout  # noqa: PLC0415

            raise AskTimeout(
                f"the coordinator took no task-events subscription within {timeout_s:g} s"
            )

    async def close(self) -> None:
        """Stop the feed agent; the clients get no more events."""
        member, self._member = self._member, None
        if member is not None:
            await asyncio.to_thread(member.node.terminate, FEED_NAME)
        for task in list(self._runs):
            task.cancel()

    def subscribe(self, principal: Principal, topics: Iterable[str] = TOPICS) -> Subscription:
        """A new client (on the hub's loop)."""
        client = Subscription(self, principal, topics, self.buffer)
        self._clients.add(client)
        return client

    def unsubscribe(self, client: Subscription) -> None:
        self._clients.discard(client)

    def publish(self, event: Event) -> None:
        """Offer ``event`` to every client; from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._offer(event)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                loop.call_soon_threadsafe(self._offer, event)

    def _offer(self, event: Event) -> None:
        self.published += 1
        for client in list(self._clients):
            client.offer(event)

    # -- what the feed hands over (on its agent's thread) --------------------------------------

    def task_event(self, body: Mapping[str, Any]) -> None:
        """A coordinator ``task.event``: a ``task_update``, and a ``pipeline_progress`` when
        the task is a run's step."""
        time_ms = body.get("time_ms")
        time_ms = time_ms if isinstance(time_ms, int) else None
        self.publish(Event.of("task_update", dict(body), time_ms))
        run_id = body.get("run")
        if isinstance(run_id, str):
            step = {"run_id": run_id, "step": body.get("step"), "task_id": body.get("task_id"),
                    "state": body.get("state")}  # fmt: skip
            self.publish(Event.of("pipeline_progress", step, time_ms))
            if body.get("state") in _STEP_ENDED and self._loop is not None:
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._read_run, run_id)

    def _read_run(self, run_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run_progress(run_id))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _run_progress(self, run_id: str) -> None:
        try:
            run = await self.runtime.read("coordinator", WORKFLOW_STATUS, {"run_id": run_id})
        except MacpError as e:
            _log.info("gateway.events.run_unread", run=run_id, error=str(e))
            return
        steps = run.get("steps") or {}
        done = sum(1 for s in steps.values() if s.get("state") in _STEP_RESOLVED)
        progress = {"run_id": run_id, "workflow": run.get("workflow"), "state": run.get("state"),
                    "steps_done": done, "steps_total": len(steps),
                    "progress": round(done / len(steps), 4) if steps else 1.0}  # fmt: skip
        self.publish(Event.of("pipeline_progress", progress, run.get("updated_ms")))

    def agent_changed(self, record: Mapping[str, Any]) -> None:
        """A registry record changed: an ``agent_update``."""
        fields = ("address", "name", "node", "status", "load", "capabilities", "role", "group")
        self.publish(Event.of("agent_update", {k: record.get(k) for k in fields}))

    def alert(self, body: Mapping[str, Any]) -> None:
        """A monitor alert: an ``alert``."""
        time_ms = body.get("ts")
        data = {k: v for k, v in body.items() if k != "ts"}
        self.publish(Event.of("alert", data, time_ms if isinstance(time_ms, int) else None))
