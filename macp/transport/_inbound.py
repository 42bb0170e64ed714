"""What the I/O thread does with what it receives: take frames off a socket (within a
budget), check who sent them, unpack, refuse what is bad (counted, logged, answered where it
can be), and deliver the rest: to a local actor, a waiting ask, the node itself, or onwards."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import zmq

from macp.envelope import Envelope, Kind
from macp.errors import EnvelopeError, MacpError
from macp.transport import _system
from macp.transport.frames import GATEWAY, addresses_of, answers_asker, refusal, unpack_frame

if TYPE_CHECKING:
    from macp.transport.router import Router

__all__ = ["bad", "receive"]

_RECV_BUDGET: Final = 5_000  # envelopes per visit to a socket, so that ticks are never starved
SYSTEM: Final = _system.SYSTEM


def receive(router: Router, sock: zmq.Socket[bytes], peer: str | None) -> None:
    """Take what ``sock`` holds, up to a budget of envelopes: the rest waits for the next
    turn of the loop (the poller reports it again), after heartbeats and sends."""
    secure = router._keys is not None and peer is None
    budget = _RECV_BUDGET
    while budget > 0:
        if peer is not None and getattr(router._peers.get(peer), "socket", None) is not sock:
            return  # the peer went down and its link was replaced: this socket is closed
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=not secure)
        except zmq.Again:
            return
        budget -= 1
        if peer is not None:  # a DEALER: the answers of a peer's ROUTER, one frame each
            if len(frames) != 1:
                bad(router, peer, None, EnvelopeError("wrong multipart shape"))
                continue
            budget -= _payload(
                router, GATEWAY if peer == GATEWAY else peer, _bytes(frames[0]), None
            )
        elif len(frames) != 2:  # noqa: PLR2004 - identity and payload
            shape = EnvelopeError(f"wrong multipart shape ({len(frames)} frames)")
            bad(router, _ident(frames[0]), None, shape)
        else:
            identity = _bytes(frames[0])
            claimed = identity.decode(errors="replace")
            if secure and not _authentic(router, claimed, frames[1]):
                continue
            budget -= _payload(router, claimed, _bytes(frames[1]), identity)


def _authentic(router: Router, claimed: str, frame: Any) -> bool:
    user = frame.get("User-Id")
    if user == claimed or (claimed.startswith("~") and user not in {None, "?"}):
        return True
    router.counters["impersonations"] += 1
    router.throttle.warn(
        router._log, claimed, "transport.impersonation", claimed=claimed, key_of=user
    )
    return False


def _payload(router: Router, peer: str, payload: bytes, identity: bytes | None) -> int:
    """Deliver a frame's envelopes; how many there were."""
    router.counters["frames_in"] += 1
    if peer in router._peers:  # strangers are not tracked (a client's member is: its GATEWAY)
        router._apply(router._liveness.seen(peer, time.monotonic()))
    try:
        envelopes, errors = unpack_frame(payload, router.frame_limit)
    except EnvelopeError as e:  # the network boundary: count, log, carry on
        bad(router, peer, identity, e, size=len(payload))
        return 0
    for env in envelopes:
        _inbound(router, env, peer, identity)
    if errors:
        router.counters["bad_envelopes"] += len(errors)
        bad(router, peer, identity, *errors, size=len(payload))
    return len(envelopes)


def bad(
    router: Router, peer: str, identity: bytes | None, *errors: EnvelopeError, size: int = 0
) -> None:
    """Count a bad frame (refused whole, or holding ``errors``, the envelopes refused); log
    each (at a bounded rate per peer) and answer whoever waits on it: the sender of a bad ask,
    the asker of a bad reply."""
    router.counters["bad_frames"] += 1
    for error in errors:
        router.throttle.warn(
            router._log, peer, "envelope.rejected",
            peer=peer, reason=error.message, type=error.data.get("type"), size=size,
        )  # fmt: skip
        answer = refusal(error, f"{SYSTEM}@{router._name}")
        if answer is None:
            continue
        if answers_asker(error):  # a bad reply: its asker (here, or a client) gets the error
            router._node.send(answer)
        elif identity is not None:  # a bad ask from a client or a peer: back where it came
            router._emit_router(identity, [answer])
        else:  # a bad ask through the link of a peer (or the gateway of a client)
            router._route(peer, [answer])


def _inbound(router: Router, env: Envelope, peer: str, identity: bytes | None) -> None:
    router.counters["envelopes_in"] += 1
    src_node = env.src.partition("@")[2]
    # A peer speaks for its own actors (and relays its clients'), never for another's.
    foreign = src_node != peer and not (src_node.startswith("~") and not peer.startswith("~"))
    if foreign and peer != GATEWAY:
        router.counters["refused_src"] += 1
        router.throttle.warn(
            router._log, peer, "envelope.refused", peer=peer, src=env.src, reason="foreign src"
        )
        return
    if src_node.startswith("~") and src_node != router._name:
        router._routes[src_node] = peer if peer in router._peers else (identity or b"").decode()
    name, _, node = env.dst.partition("@")
    if name == SYSTEM and node in {"", _system.ANY_NODE, router._name}:
        _system.handle(router, env, peer)
    elif env.kind == Kind.HEARTBEAT:
        return
    elif node and node != router._name:
        try:
            router._node.send(env)  # for another node: this one relays (for its clients)
        except MacpError as e:  # not for this node's limits: refused, answered where it can be
            bad(router, peer, identity, EnvelopeError(e.message, data=addresses_of(list(env))))
    else:
        router._node._deliver(env, name)


def _bytes(frame: Any) -> bytes:
    return frame if isinstance(frame, bytes) else frame.bytes


def _ident(frame: Any) -> str:
    return _bytes(frame).decode(errors="replace")
