"""The gateway's WebSocket at /ws, served by uvicorn on 127.0.0.1 and read by the websockets
client, against a real cluster (a head and a worker process; the gateway a member node of its
own): the first message within 5 s or close 4401, bad and refused credentials, task_update
events in order, topics, agent_update, alert, pipeline_progress for a workflow run, an agent
principal that sees only its own tasks, and a slow reader dropped while a fast one gets all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Self

import pytest
import uvicorn
from gateway_cluster import cluster_procs, member
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from macp.errors import Unauthorized
from macp.gateway import Guard, Principal, Role
from macp.gateway.audit import AuditLog, digest, read_records
from macp.gateway.http.events import EventHub
from macp.gateway.http.ws import ws_route
from macp.gateway.quotas import QuotaLimits, Quotas
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from starlette.websockets import WebSocket

    from macp.gateway import Member

pytestmark = pytest.mark.integration
__all__ = ["cluster_procs", "member"]  # fixtures


class Tokens(Guard):
    """A guard that knows a few tokens (the stand-in for a configured authentication)."""

    def __init__(self, tokens: dict[str, Principal]) -> None:
        super().__init__()
        self.tokens = tokens

    @property
    def configured(self) -> bool:
        return True

    def authenticate(self, credential: str) -> Principal:
        if credential not in self.tokens:
            raise Unauthorized("the token is not valid: its signature does not match")
        return self.tokens[credential]


TOKENS = {
    "viewer-token": Principal("vera", Role.VIEWER, "jwt"),
    "sq1-token": Principal("sq1", Role.AGENT, "api-key"),
}


class Served:
    """The /ws endpoint on uvicorn on a thread of its own, its hub fed by ``member``."""

    def __init__(
        self,
        member: Member,
        guard: Guard,
        buffer: int = 1000,
        send_buffer: int | None = None,
        **route: Any,
    ) -> None:
        self.hub = EventHub(member.runtime, buffer=buffer)
        self.app = Starlette(routes=[ws_route(self.hub, guard, **route)])
        self.member = member
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))
        self.url = ""
        # the listening socket's send buffer is its connections' (fixed, so not grown)
        self.sock = socket.create_server(("127.0.0.1", 0))
        if send_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)

    async def _run(self) -> None:
        await self.hub.start(self.member)
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            await self.hub.close()

    def __enter__(self) -> Self:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 20, "no uvicorn")
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.loop.close()
        self.sock.close()

    @contextlib.contextmanager
    def client(self, token: str | None = None, **hello: Any) -> Iterator[ClientConnection]:
        with connect(self.url, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "auth", "token": token, **hello}))
            assert _next(ws)["type"] == "authenticated"
            yield ws


def _next(ws: ClientConnection, timeout_s: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout_s))
    return message


def _until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout_s: float = 20
) -> list[dict[str, Any]]:
    """Every message up to the first ``done`` accepts (included)."""
    deadline = time.monotonic() + timeout_s
    seen: list[dict[str, Any]] = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"not seen in time; saw {[m['type'] for m in seen][-20:]}"
        seen.append(_next(ws, left))
        if done(seen[-1]):
            return seen


def _closed(ws: ClientConnection, timeout_s: float = 10) -> tuple[int, str, list[Any]]:
    """The close code and reason, once the gateway closes ``ws``, and what came before."""
    before: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            before.append(json.loads(ws.recv(timeout=deadline - time.monotonic())))
        except ConnectionClosed as closed:
            frame = closed.rcvd
            break
    else:
        raise AssertionError(f"not closed within {timeout_s:g} s")
    assert frame is not None, "closed without a close frame"
    return frame.code, frame.reason, before


def _task_ended(task_id: str) -> Callable[[dict[str, Any]], bool]:
    def ended(m: dict[str, Any]) -> bool:
        return (m["type"] == "task_update" and m["data"]["task_id"] == task_id
                and m["data"]["state"] in {"succeeded", "failed", "cancelled"})  # fmt: skip

    return ended


@pytest.fixture
def served(member: Member) -> Iterator[Served]:
    with Served(member, Guard()) as it:
        yield it


@pytest.fixture
def guarded(member: Member) -> Iterator[Served]:
    with Served(member, Tokens(TOKENS)) as it:
        yield it


def test_a_socket_that_never_authenticates_is_closed_4401_within_about_5_s(
    served: Served,
) -> None:
    with connect(served.url, open_timeout=10) as ws:
        started = time.monotonic()
        code, reason, before = _closed(ws, timeout_s=10)
        waited = time.monotonic() - started
    assert code == 4401
    assert reason == 'authenticate within 5 s: send {"type": "auth", "token": ...} first'
    assert 4.5 <= waited < 7, waited
    assert before[0]["type"] == "error"
    assert before[0]["data"]["code"] == -32006


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ('{"type": "hello"}', 'the first message must be {"type": "auth", ...} or {"type'),
        ("not json", "a message must be JSON, not 'not json'"),
        ("[1, 2]", 'a message is a JSON object with a "type", e.g. {"type": "ping"}'),
    ],
)
def test_a_first_message_that_is_not_auth_or_register_is_closed_4401(
    served: Served, first: str, reason: str
) -> None:
    with connect(served.url, open_timeout=10) as ws:
        ws.send(first)
        code, said, _ = _closed(ws)
    assert code == 4401
    assert said.startswith(reason)


def test_a_bad_token_is_closed_4401_and_a_missing_one_too(guarded: Served) -> None:
    with connect(guarded.url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": "forged"}))
        code, reason, before = _closed(ws)
    assert (code, reason) == (4401, "the token is not valid: its signature does not match")
    assert before[0]["data"]["data"]["error"] == "Unauthorized"
    with connect(guarded.url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth"}))
        code, reason, _ = _closed(ws)
    assert code == 4401
    assert reason.startswith("this gateway needs a credential: give 'token' (or 'key')")


def test_a_gateway_without_auth_serves_any_token_as_the_local_user(served: Served) -> None:
    with connect(served.url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": "whatever"}))
        hello = _next(ws)
    assert hello["type"] == "authenticated"
    assert hello["data"] == {"principal": "local", "role": "admin", "topics": sorted(
        ["task_update", "pipeline_progress", "agent_update", "alert", "error"])}  # fmt: skip
    assert isinstance(hello["timestamp"], str)
    assert hello["timestamp"].endswith("Z")


def test_register_goes_to_the_register_session_and_a_viewer_may_not(member: Member) -> None:
    sessions: list[tuple[dict[str, Any], Principal]] = []

    async def session(websocket: WebSocket, hello: dict[str, Any], principal: Principal) -> None:
        sessions.append((hello, principal))
        await websocket.send_text(json.dumps({"type": "registered", "name": hello["name"]}))
        await websocket.close(1000, "done")

    with Served(member, Tokens(TOKENS), register=session) as it:
        with connect(it.url, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "register", "key": "sq1-token", "name": "ext"}))
            assert _next(ws) == {"type": "registered", "name": "ext"}
        assert sessions == [({"type": "register", "key": "sq1-token", "name": "ext"},
                             TOKENS["sq1-token"])]  # fmt: skip
        with connect(it.url, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "register", "key": "viewer-token", "name": "ext"}))
            code, reason, _ = _closed(ws)
    assert code == 4403
    assert reason.startswith("vera (viewer) may not register an agent")
    assert len(sessions) == 1


def test_task_update_events_of_a_submitted_task_come_in_order(
    served: Served, member: Member
) -> None:
    with served.client() as ws:
        task = member.cluster.submit("echo", {"n": 1})
        seen = _until(ws, _task_ended(task.id))
    events = [m for m in seen if m["type"] == "task_update" and m["data"]["task_id"] == task.id]
    states = [e["data"]["state"] for e in events]
    assert [s for s in states if s != "running"] == ["pending", "assigned", "succeeded"]
    assert [e["data"]["previous"] for e in events] == [None, *states[:-1]]
    assert events[-1]["data"]["type"] == "echo"
    assert all(e["timestamp"].endswith("Z") for e in events)


def test_topics_are_subscribed_and_unsubscribed(served: Served, member: Member) -> None:
    with served.client() as everything, served.client(topics=["alert"]) as picky:
        picky.send(json.dumps({"type": "subscribe", "topics": ["nonsense"]}))
        error = _next(picky)
        assert error["type"] == "error"
        assert error["data"]["message"].startswith("unknown topic 'nonsense': the topics are")
        unseen = member.cluster.submit("echo", "unseen")
        _until(everything, _task_ended(unseen.id))
        picky.send(json.dumps({"type": "subscribe", "topics": ["task_update"]}))
        assert _next(picky)["data"] == {"topics": ["alert", "task_update"]}
        seen = member.cluster.submit("echo", "seen")
        got = _until(picky, _task_ended(seen.id))
        assert {m["data"]["task_id"] for m in got if m["type"] == "task_update"} == {seen.id}
        picky.send(json.dumps({"type": "unsubscribe", "topics": ["task_update", "alert"]}))
        assert _next(picky)["data"] == {"topics": []}
        picky.send(json.dumps({"type": "ping"}))
        assert _next(picky)["type"] == "pong"


def test_an_agent_principal_sees_only_its_own_tasks(guarded: Served, member: Member) -> None:
    with guarded.client("viewer-token") as viewer, guarded.client("sq1-token") as agent:
        other = member.cluster.submit("echo", "not yours")
        _until(viewer, _task_ended(other.id))
        own = member.cluster.submit("square", {"x": 4})
        got = _until(agent, _task_ended(own.id))
    assert {m["data"]["task_id"] for m in got if m["type"] == "task_update"} == {own.id}
    assert {m["data"]["agent"] for m in got if m["type"] == "task_update"} == {"sq1@w1"}


def test_an_agent_spawned_and_stopped_is_an_agent_update(served: Served, member: Member) -> None:
    with served.client(topics=["agent_update"]) as ws:
        address = member.cluster.spawn("agents:Echo", "fleeting", node="w1")
        up = _until(ws, lambda m: m["data"].get("address") == address)[-1]
        assert up["type"] == "agent_update"
        assert up["data"]["status"] == "available"
        assert member.cluster.terminate(address) is True
        gone = _until(ws, lambda m: m["data"]["status"] in {"gone", "offline"})[-1]
    assert gone["data"]["address"] == address


def test_a_monitor_rule_that_fires_is_an_alert(served: Served, member: Member) -> None:
    with served.client(topics=["alert"]) as ws:
        metric = "agent.mailbox_depth{agent=echo1@w1}"
        rule: dict[str, Any] = {"name": "ws-mailbox", "metric": metric, "op": ">=",
                                "threshold": 0}  # fmt: skip
        member.cluster.request("monitor", "monitor.add_rule", rule).get()
        alert = _until(ws, lambda m: m["data"].get("rule") == "ws-mailbox", 30)[-1]
    assert alert["type"] == "alert"
    assert alert["data"]["state"] == "firing"
    assert alert["data"]["value"] >= 0


def test_a_workflow_run_is_pipeline_progress(served: Served, member: Member) -> None:
    squares = {"name": "ws-squares", "steps": [
        {"id": "a", "type": "square", "body": {"x": "${input}"}, "capabilities": ["square"]},
        {"id": "b", "type": "square", "body": {"x": "${deps.a.square}"}, "depends_on": ["a"],
         "capabilities": ["square"]},
    ]}  # fmt: skip
    with served.client(topics=["pipeline_progress"]) as ws:
        run = member.cluster.run(squares, 3)
        ended: set[str] = set()  # what the end of the run shows: its summary, b's own event

        def run_ended(m: dict[str, Any]) -> bool:
            data = m["data"]
            if data.get("run_id") == run.id and data["state"] == "succeeded":
                ended.add("run" if "steps_done" in data else str(data.get("step")))
            return {"run", "b"} <= ended  # either may come first: events are not a read's

        got = _until(ws, run_ended)
    mine = [m["data"] for m in got if m["data"]["run_id"] == run.id]
    steps = [(d["step"], d["state"]) for d in mine if "step" in d and d["state"] != "running"]
    assert steps == [("a", "pending"), ("a", "assigned"), ("a", "succeeded"),
                     ("b", "pending"), ("b", "assigned"), ("b", "succeeded")]  # fmt: skip
    runs = [d for d in mine if "steps_done" in d]
    assert (runs[-1]["state"], runs[-1]["steps_done"], runs[-1]["steps_total"]) == (
        "succeeded",
        2,
        2,
    )
    assert runs[-1]["workflow"] == "ws-squares"
    assert runs[-1]["progress"] == 1.0


def _slow_socket(url: str) -> socket.socket:
    """A socket for a client that reads nothing, with the smallest receive buffer the kernel
    gives."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])))
    return sock


def test_a_slow_reader_is_dropped_while_a_fast_one_gets_everything(member: Member) -> None:
    with (
        Served(member, Guard(), buffer=100, send_buffer=4096) as it,
        it.client() as fast,
        connect(it.url, sock=_slow_socket(it.url), open_timeout=10, max_queue=1) as slow,
    ):
        slow.send(json.dumps({"type": "auth", "topics": ["task_update"]}))
        # a task's events name its type: no agent takes this one, so it waits until cancelled
        big = "unhandled-" + "x" * 4000
        tasks = [member.cluster.submit(big, timeout_s=60) for _ in range(300)]
        assert all(task.cancel() for task in tasks)
        ids = {t.id for t in tasks}
        done: set[str] = set()
        seen: dict[str, list[str]] = {t: [] for t in ids}
        deadline = time.monotonic() + 60
        while done != ids:
            assert time.monotonic() < deadline, f"{len(ids - done)} tasks never seen ending"
            message = _next(fast)
            if message["type"] == "task_update" and message["data"]["task_id"] in ids:
                seen[message["data"]["task_id"]].append(message["data"]["state"])
                if message["data"]["state"] == "cancelled":
                    done.add(message["data"]["task_id"])
        # every event was offered to both at once: the slow one has overflowed by now
        assert it.hub.dropped == 1
        code, reason, _ = _closed(slow, timeout_s=20)
    assert all([s for s in states if s != "running"] == ["pending", "cancelled"]
               for states in seen.values())  # fmt: skip
    assert code == 4408
    assert reason.startswith("too slow: 100 events were waiting to be read")


def _limited_guard(tmp_path: Path) -> Tokens:
    """``Tokens`` with an audit log and a cap of one WebSocket per principal."""
    guard = Tokens(TOKENS)
    guard.audit = AuditLog(tmp_path / "audit.sqlite3", gateway="gw")
    guard.quotas = Quotas(QuotaLimits(websockets=1))
    return guard


def test_an_event_session_holds_a_websocket_slot_and_one_over_the_cap_is_closed_4429(
    member: Member, tmp_path: Path
) -> None:
    guard = _limited_guard(tmp_path)

    def authenticates(url: str) -> bool:
        with connect(url, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "auth", "token": "viewer-token"}))
            return bool(_next(ws)["type"] == "authenticated")

    with Served(member, guard) as it:
        with it.client("viewer-token") as first:
            with connect(it.url, open_timeout=10) as second:
                second.send(json.dumps({"type": "auth", "token": "viewer-token"}))
                code, reason, before = _closed(second)
            assert code == 4429
            assert reason == (
                "vera has 1 WebSockets open, the most it may; close one, then retry after 1 s"
            )
            assert before[0]["data"]["data"]["retry_after_s"] == 1
            first.send(json.dumps({"type": "ping"}))
            assert _next(first)["type"] == "pong"  # the first one is served on
        # its slot is given back once the gateway sees it closed
        wait_until(lambda: authenticates(it.url), 10, "the closed socket's slot was not freed")
    assert guard.audit is not None
    guard.audit.close()


def test_a_register_holds_a_slot_and_every_register_is_audited(
    member: Member, tmp_path: Path
) -> None:
    guard = _limited_guard(tmp_path)

    async def session(websocket: WebSocket, hello: dict[str, Any], _principal: Principal) -> None:
        await websocket.send_text(json.dumps({"type": "registered", "name": hello["name"]}))
        with contextlib.suppress(Exception):
            await websocket.receive()  # until the client closes

    with Served(member, guard, register=session) as it:
        with connect(it.url, open_timeout=10) as held:
            held.send(json.dumps({"type": "register", "key": "sq1-token", "name": "ext"}))
            assert _next(held) == {"type": "registered", "name": "ext"}
            with connect(it.url, open_timeout=10) as over:
                over.send(json.dumps({"type": "register", "key": "sq1-token", "name": "ext2"}))
                code, reason, _ = _closed(over)
            assert (code, reason.split(";")[0]) == (
                4429,
                "sq1 has 1 WebSockets open, the most it may",
            )
        for key, closed_with in (("viewer-token", 4403), ("forged", 4401)):
            with connect(it.url, open_timeout=10) as refused:
                refused.send(json.dumps({"type": "register", "key": key, "name": "ext3"}))
                assert _closed(refused)[0] == closed_with
    assert guard.audit is not None
    guard.audit.close()
    records = read_records(tmp_path / "audit.sqlite3")
    assert [
        (r.principal, r.role, r.operation, r.outcome, r.code, r.transport) for r in records
    ] == [
        ("sq1", "agent", "agent_register", "ok", None, "websocket"),
        ("sq1", "agent", "agent_register", "limited", -32000, "websocket"),
        ("vera", "viewer", "agent_register", "denied", -32006, "websocket"),
        ("anonymous", "", "agent_register", "denied", -32006, "websocket"),
    ]
    assert [r.params_sha256 for r in records][:2] == [
        digest({"type": "register", "name": "ext"})[0],  # never the credential
        digest({"type": "register", "name": "ext2"})[0],
    ]
