"""The messages nodes exchange about themselves, handled on the I/O thread.

They are addressed to ``$node@NODE`` (``$node@*`` means "the node that receives this"):

===============  =====  ========================================================================
node.hello       tell   ``{name, address, incarnation}``: I exist, reach me there (sent first
                        on every new link, and again whenever the peer comes up)
node.heartbeat   beat   ``{incarnation}``: still alive (only when nothing else was sent)
node.join        ask    ``{name, address, incarnation}``: answered with ``{members: {name: addr},
                        head}`` (the node hosting the control plane, if the member knows it)
node.bye         tell   a clean shutdown: the peer is down at once
node.info        ask    answered with name, address, uptime, peers, actors, counters
===============  =====  ========================================================================
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from macp.envelope import VERSION, Envelope, Kind, Priority, new_id, now_ms
from macp.errors import ConfigError, InvalidParams, UnknownMessageType
from macp.transport import _links
from macp.transport.liveness import PeerState

if TYPE_CHECKING:
    from macp.node import Node
    from macp.transport.frames import Link
    from macp.transport.router import Router

__all__ = ["BYE", "HEARTBEAT", "HELLO", "INFO", "JOIN", "SYSTEM", "handle"]

SYSTEM: Final = "$node"
ANY_NODE: Final = "*"
HELLO: Final = "node.hello"
HEARTBEAT: Final = "node.heartbeat"
JOIN: Final = "node.join"
BYE: Final = "node.bye"
INFO: Final = "node.info"
JOIN_PREFIX: Final = "$join:"


def _announcement(body: Any) -> tuple[str, str, str | None]:
    if not isinstance(body, dict):
        raise InvalidParams("a node announcement is a map with name and address")
    name, address, incarnation = body.get("name"), body.get("address"), body.get("incarnation")
    if not isinstance(name, str) or not isinstance(address, str):
        raise InvalidParams("a node announcement needs a string name and address")
    return name, address, incarnation if isinstance(incarnation, str) else None


def _own_announcement(body: Any, peer: str) -> tuple[str, str, str | None]:
    """An announcement, which a peer may make of itself only (never of another node)."""
    name, address, incarnation = _announcement(body)
    if name != peer:
        raise InvalidParams(f"peer {peer!r} announced itself as {name!r}")
    return name, address, incarnation


def _announced(router: Router, body: Any, peer: str, now: float) -> None:
    """A peer said who and where it is: link to it (at that address) and count it as heard."""
    name, address, incarnation = _own_announcement(body, peer)
    if name == router._name:
        return
    if _reachable(router, name, address):
        _links.connect(router, name, address)
    limit = body.get("frame_limit") if isinstance(body, dict) else None
    if type(limit) is int and limit > 0:  # an older peer says nothing: it is not limited here
        router.peer_frame_limits[name] = limit
    if name in router._peers:
        router._apply(router._liveness.seen(name, now, incarnation))


def _reachable(router: Router, name: str, address: str) -> bool:
    """Whether to (re)connect to ``address``: a peer bound on every interface announces a
    wildcard host, which only the address this node was given for it can replace."""
    host = address.partition("://")[2].rpartition(":")[0].strip("[]")
    if host in {"0.0.0.0", "::", "*"}:  # noqa: S104 - comparing, not binding
        if name not in router._peers:
            router._log.warning("transport.unreachable_peer", peer=name, address=address)
        return False
    return True


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def handle(router: Router, env: Envelope, peer: str) -> None:
    """Handle one system message from ``peer`` (on the I/O thread)."""
    try:
        _handle(router, env, peer)
    except (InvalidParams, ConfigError) as e:  # e.g. an announcement with a bad address
        router.counters["bad_system"] += 1
        router._log.warning("transport.bad_system_message", peer=peer, type=env.type, error=str(e))
        if env.answered:
            _answer(router, env, e)


def _handle(router: Router, env: Envelope, peer: str) -> None:
    now = time.monotonic()
    body = env.body
    if env.kind == Kind.HEARTBEAT:
        router.counters["heartbeats_in"] += 1
        if peer in router._peers:  # a stranger's heartbeat makes it no peer: hello does
            incarnation = body.get("incarnation") if isinstance(body, dict) else None
            router._apply(router._liveness.seen(peer, now, _str_or_none(incarnation)))
        client = env.src.partition("@")[2]
        if client.startswith("~") and client in router._routes:  # a client of this node
            answer = {"incarnation": router.incarnation}  # so that it knows this node lives
            router._route(client, [envelope(router, Kind.HEARTBEAT, HEARTBEAT, client, answer)])
    elif env.kind == Kind.REPLY and env.corr == getattr(router, "_join_id", None):
        _joined(router, body, peer)
    elif env.type == HELLO:
        _announced(router, body, peer, now)
    elif env.type == JOIN:
        _announced(router, body, peer, now)
        members = {n: p.address for n, p in router._peers.items() if not n.startswith("$")}
        members[router._name] = router.address or ""
        _answer(router, env, {"members": members, "head": router._node.head})
    elif env.type == BYE:
        router._apply(router._liveness.left(peer))
    elif env.type == INFO:
        _answer(router, env, info(router._node))
    elif env.answered:
        _answer(router, env, UnknownMessageType(f"nodes do not handle {env.type!r}"))


def envelope(router: Router, kind: Kind, type: str, node: str, body: Any) -> Envelope:
    """A system message from this node to node ``node``."""
    return Envelope(
        VERSION, new_id(), kind, type, f"{SYSTEM}@{router._name}", f"{SYSTEM}@{node}", None,
        Priority.CRITICAL, now_ms(), None, (), body,
    )  # fmt: skip


def _hello_body(router: Router) -> dict[str, Any]:
    return {
        "name": router._name,
        "address": router.address,
        "incarnation": router.incarnation,
        "frame_limit": router.frame_limit,  # the largest frame it accepts: senders respect it
    }


def say_hello(router: Router, link: Link) -> None:
    """Tell the peer at the end of ``link`` who and where this node is."""
    router._emit(link, [envelope(router, Kind.TELL, HELLO, link.name, _hello_body(router))])


def start_join(router: Router, spec: str) -> None:
    """Ask the member at ``spec`` (``ADDRESS`` or ``NAME=ADDRESS``) for the members."""
    name, sep, address = spec.partition("=")
    if not sep:
        if router._keys is not None:
            raise ConfigError(
                f"--join {spec}: with keys, name the member (NAME=ADDRESS) so its key is known"
            )
        name, address = f"{JOIN_PREFIX}{spec}", spec
    link = _links.connect(router, name, address, hello=False)
    if name.startswith(JOIN_PREFIX):
        router._liveness.remove(name)
    join = envelope(router, Kind.ASK, JOIN, ANY_NODE, _hello_body(router))
    router._join_id = join.id
    router._emit(link, [join])


def goodbye(router: Router) -> None:
    """Tell every peer that is up that this node is leaving."""
    for link in list(router._peers.values()):
        if router._liveness.state(link.name) is PeerState.UP:
            router._emit(link, [envelope(router, Kind.TELL, BYE, link.name, None)])


def _answer(router: Router, env: Envelope, result: Any) -> None:
    src = f"{SYSTEM}@{router._name}"
    answer = env.error(result, src) if isinstance(result, Exception) else env.reply(result, src)
    node = env.src.partition("@")[2]
    router._route(node, [answer])


def _joined(router: Router, body: Any, via: str) -> None:
    members = body.get("members") if isinstance(body, dict) else None
    if not isinstance(members, dict):
        raise InvalidParams("a join answer needs a map of members")
    for name, address in members.items():
        if name != router._name and isinstance(address, str):
            _links.connect(router, name, address)
    for temp in [p for n, p in router._peers.items() if n.startswith(JOIN_PREFIX)]:
        _links.disconnect(router, temp)
    head = body.get("head")
    if isinstance(head, str) and router._node.head is None:  # a node without a head of its
        router._node.set_head(head)  # own takes the member's (a bad name: ConfigError, logged)
    router._log.info("node.joined", via=via, members=sorted(members), head=head)
    router.joined.set()


_process: list[Any] = []  # psutil.Process of this process (cpu_percent needs the same one)


def process_metrics() -> dict[str, float]:
    """This process's cpu (since the last call), memory, open files and sockets (psutil)."""
    import psutil  # noqa: PLC0415

    if not _process or _process[0].pid != os.getpid():
        _process[:] = [psutil.Process()]
    proc = _process[0]
    with proc.oneshot():
        return {
            "cpu_percent": proc.cpu_percent(None),
            "memory_rss_bytes": float(proc.memory_info().rss),
            "open_files": float(proc.num_fds()),
            "open_sockets": float(_sockets(proc)),
        }


def _sockets(proc: Any) -> int:
    """Open sockets: from /proc/self/fd where there is one (microseconds), else psutil's
    connection list (milliseconds: it reads every connection of the host)."""
    try:
        fds = list(Path("/proc/self/fd").iterdir())
    except OSError:
        return len(proc.net_connections(kind="all"))
    count = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            count += str(fd.readlink()).startswith("socket:")
    return count


def info(node: Node) -> dict[str, Any]:
    """What ``node.info`` answers (a node without a transport has no peers)."""
    router = node.router
    return {
        "name": node.name,
        "address": node.address,
        "incarnation": node.incarnation,
        "uptime_s": round(time.time() - node.started_at, 3),
        "peers": node.peers(),
        "head": node.head,
        "actors": sorted(node.agents()),
        "counters": dict(node.counters + router.counters if router else node.counters),
        "metrics": process_metrics(),
    }
