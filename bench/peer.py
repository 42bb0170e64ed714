"""The raw baseline across processes: bare pyzmq DEALER -> ROUTER on loopback, with msgpack.

Run as ``python -m bench.peer --bind tcp://127.0.0.1:0 [--parent PID]``: a ROUTER that prints
``{"event": "peer.ready", "address": ...}`` and serves until SIGTERM (or until its parent is
gone). :class:`RawClient` is the other side, used in the benchmark process.

Control messages are two frames after the identity, ``[b"ctl", msgpack([command, ...])]``,
each answered ``["ok"]``; data messages are one frame:

- ``["sink", n, batched]``: decode and count the next data messages (one msgpack object per
  frame, or several back to back when ``batched``); after ``n`` of them, answer ``["done", n]``.
- ``["echo"]``: answer every data frame with its body, decoded and encoded again (W4's
  ping-pong, W5's scatter of 100 requests per round).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

import msgpack
import zmq

from bench.core import BenchError, BenchTimeout, payload

__all__ = ["HWM", "RawClient", "main"]

HWM = 100_000
"""Send and receive high-water marks: the same as a macp node's defaults."""

_CTL = b"ctl"
_POLL_MS = 1000


class _Stop(Exception):
    pass


def _on_term(_signum: int, _frame: object) -> None:
    raise _Stop


def serve(bind: str, parent: int | None) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.RCVTIMEO, _POLL_MS)
    listen = bind[:-1] + "*" if bind.endswith(":0") else bind
    sock.bind(listen)
    address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    print(json.dumps({"event": "peer.ready", "address": address}), flush=True)
    packer = msgpack.Packer()
    unpacker = msgpack.Unpacker(raw=False)
    unpackb = msgpack.unpackb
    mode, expected, count = "", 0, 0
    try:
        while True:
            try:
                frames = sock.recv_multipart()
            except zmq.Again:
                if parent is not None and os.getppid() != parent:
                    return  # the benchmark died without stopping us
                continue
            if len(frames) == 3 and frames[1] == _CTL:
                command = unpackb(frames[2], raw=False)
                mode, count = command[0], 0
                expected = int(command[1]) if mode == "sink" else 0
                if mode == "sink" and command[2]:
                    mode = "batch"
                sock.send_multipart([frames[0], packer.pack(["ok"])])
                continue
            identity, data = frames
            if mode == "sink":
                unpackb(data, raw=False)
                count += 1
            elif mode == "batch":
                unpacker.feed(data)
                for _ in unpacker:
                    count += 1
            elif mode == "echo":
                sock.send_multipart([identity, packer.pack(unpackb(data, raw=False))])
                continue
            if count == expected and mode in {"sink", "batch"}:
                sock.send_multipart([identity, packer.pack(["done", count])])
    except _Stop:
        return
    finally:
        sock.close(0)
        context.term()


class RawClient:
    """The benchmark's side of the raw baseline: one DEALER connected to the peer."""

    def __init__(self, address: str) -> None:
        self._context = zmq.Context()
        self._sock = self._context.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, HWM)
        self._sock.setsockopt(zmq.RCVHWM, HWM)
        self._sock.connect(address)
        self._packer = msgpack.Packer()

    def close(self) -> None:
        self._sock.close(0)
        self._context.term()

    def _timeouts(self, timeout_s: float) -> None:
        ms = max(1, int(timeout_s * 1000))
        self._sock.setsockopt(zmq.SNDTIMEO, ms)
        self._sock.setsockopt(zmq.RCVTIMEO, ms)

    def _recv(self, doing: str) -> Any:
        try:
            return msgpack.unpackb(self._sock.recv(), raw=False)
        except zmq.Again:
            raise BenchTimeout(f"raw peer: no answer while {doing}") from None

    def control(self, timeout_s: float, *command: object) -> None:
        self._timeouts(timeout_s)
        try:
            self._sock.send_multipart([_CTL, self._packer.pack(list(command))])
        except zmq.Again:
            raise BenchTimeout(f"raw peer: cannot send {command[0]!r}") from None
        answer = self._recv(f"setting up {command[0]!r}")
        if answer != ["ok"]:
            raise BenchError(f"raw peer answered {answer!r} to {command!r}")

    def tell(self, n: int, batch: int, timeout_s: float) -> float:
        """Send ``n`` payloads one per frame (``batch`` 1) or ``batch`` per frame, until the
        peer has decoded them all; the elapsed seconds."""
        self.control(timeout_s, "sink", n, batch > 1)
        pack, send = self._packer.pack, self._sock.send
        start = time.perf_counter()
        try:
            if batch == 1:
                for i in range(n):
                    send(pack(payload(i)))
            else:
                parts: list[bytes] = []
                for i in range(n):
                    parts.append(pack(payload(i)))
                    if len(parts) == batch:
                        send(b"".join(parts))
                        parts = []
                if parts:
                    send(b"".join(parts))
        except zmq.Again:
            raise BenchTimeout("raw peer: a send blocked past the budget") from None
        done = self._recv(f"waiting for {n} messages to be decoded")
        elapsed = time.perf_counter() - start
        if done != ["done", n]:
            raise BenchError(f"raw peer answered {done!r}, expected ['done', {n}]")
        return elapsed

    def ping(self, n: int, timeout_s: float) -> list[int]:
        """``n`` sequential round trips (payload out, the same payload back); each in ns."""
        self.control(timeout_s, "echo")
        pack, send, recv, unpackb = (
            self._packer.pack,
            self._sock.send,
            self._sock.recv,
            msgpack.unpackb,
        )
        clock = time.perf_counter_ns
        latencies: list[int] = []
        try:
            for i in range(n):
                t0 = clock()
                send(pack(payload(i)))
                unpackb(recv(), raw=False)
                latencies.append(clock() - t0)
        except zmq.Again:
            raise BenchTimeout("raw peer: a round trip took longer than the budget") from None
        return latencies

    def scatter(self, rounds: int, fanout: int, timeout_s: float) -> float:
        """``rounds`` times: send ``fanout`` payloads (one per frame), then take the ``fanout``
        answers, each decoded; the elapsed seconds."""
        self.control(timeout_s, "echo")
        pack, send, recv, unpackb = (
            self._packer.pack,
            self._sock.send,
            self._sock.recv,
            msgpack.unpackb,
        )
        start = time.perf_counter()
        try:
            for r in range(rounds):
                base = r * fanout
                for i in range(fanout):
                    send(pack(payload(base + i)))
                for _ in range(fanout):
                    unpackb(recv(), raw=False)
        except zmq.Again:
            raise BenchTimeout("raw peer: a scatter round took longer than the budget") from None
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__)
    parser.add_argument("--bind", default="tcp://127.0.0.1:0")
    parser.add_argument("--parent", type=int, default=None, help="exit when this pid is gone")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        serve(args.bind, args.parent)
    except zmq.ZMQError as e:
        print(f"bench.peer: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
