"""The node processes of ``macp up``: one ``macp node start`` child per node of the file, and a
``macp gateway`` child when the file's ``gateway:`` section names a listener; each ready once it
prints its ready line, and failed (with the end of its standard error shown) as soon as it
exits before that."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from macp.cli._support import STOP_WITH_PARENT, fail

if TYPE_CHECKING:
    from macp.topologies.spec import TopologySpec

__all__ = ["GATEWAY_NODE", "NodeChild", "start_all", "stop_all"]

GATEWAY_NODE = "gateway"
"""The name of the gateway's node that ``macp up`` starts."""

_READY_S = 60.0  # how long `macp up` waits for a node to be ready
_TAIL_LINES = 20  # of a node's standard error, shown if it fails to start


def _free_addresses(spec: TopologySpec) -> dict[str, str]:
    """Concrete addresses for nodes that listen on port 0 (to run them all on this host)."""
    chosen = {}
    for node in spec.nodes:
        if node.listen.startswith("tcp://") and node.listen.endswith(":0"):
            host = node.listen[len("tcp://") : -2]
            with socket.socket() as probe:
                probe.bind((host, 0))
                chosen[node.name] = f"tcp://{host}:{probe.getsockname()[1]}"
    return chosen


class NodeChild:
    """One node of ``macp up`` (``macp node start``, or the gateway's ``macp gateway``) as a
    child process, running ``macp ARGS``. Its standard error is held (the last lines) until it
    is ready (it prints its ``node.ready`` or ``gateway.ready`` line), then passed on as it
    comes."""

    def __init__(self, node: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.node = node
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter, our own args
            [sys.executable, "-m", "macp", *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {}), STOP_WITH_PARENT: str(os.getpid())},
        )  # fmt: skip
        self.ready = threading.Event()
        self.ready_line: dict[str, Any] = {}  # what it printed when it was ready
        self._changed = threading.Event()  # ready, or the process ended
        self._held: deque[str] = deque(maxlen=_TAIL_LINES)
        self._lock = threading.Lock()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout as out:
            for line in out:
                if '"node.ready"' in line or '"gateway.ready"' in line:
                    with contextlib.suppress(ValueError):
                        self.ready_line = json.loads(line)
                    with self._lock:
                        self.ready.set()
                        sys.stderr.writelines(self._held)
                        self._held.clear()
                    self._changed.set()
        self.proc.wait()  # an output that ends is not a node that ended: wait for the process
        self._changed.set()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr as err:
            for line in err:
                with self._lock:
                    if self.ready.is_set():
                        sys.stderr.write(line)
                        sys.stderr.flush()
                    else:
                        self._held.append(line)

    def wait_ready(self, timeout_s: float) -> None:
        """Return once the node is ready; if it exits first (or takes longer than
        ``timeout_s``), print the end of its standard error and fail."""
        self._changed.wait(timeout_s)
        if self.ready.is_set() and self.proc.poll() is None:
            return
        code = self.proc.poll()
        if code is not None:
            self._stderr.join(5)  # what it wrote before it ended
        with self._lock:
            sys.stderr.writelines(self._held)
            shown = bool(self._held)
        what = (f"did not become ready within {timeout_s:g} s" if code is None
                else f"exited with code {code} before it was ready")  # fmt: skip
        fail(f"node {self.node!r} {what}" + ("; the end of its standard error is above"
                                               if shown else ""), 1)  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._stderr.join(5)


def start_all(spec: TopologySpec, level: str, started: list[NodeChild]) -> dict[str, str]:
    """Start the head node, then the others, into ``started`` (for the caller to stop them
    whatever happens); their addresses."""
    addresses = {**{n.name: n.listen for n in spec.nodes}, **_free_addresses(spec)}
    head = spec.head.name
    started.append(_node(spec, head, addresses, level))
    started[0].wait_ready(_READY_S)
    started += [_node(spec, n.name, addresses, level) for n in spec.nodes if n.name != head]
    for process in started[1:]:
        process.wait_ready(_READY_S)
    gateway = _gateway(spec, addresses[head], level)
    if gateway is not None:
        started.append(gateway)
        gateway.wait_ready(_READY_S)
    return addresses


def _node(spec: TopologySpec, node: str, addresses: dict[str, str], level: str) -> NodeChild:
    args = ["node", "start", "--config", spec.path, "--node", node, "--log-level", level]
    for name, address in addresses.items():
        args += ["--address", f"{name}={address}"]
    return NodeChild(node, args)


def _gateway(spec: TopologySpec, head_address: str, level: str) -> NodeChild | None:
    """The gateway of the file's ``gateway:`` section (a member node named ``gateway``, joined
    through the head), if the section names a listener."""
    if not spec.gateway.serves:
        return None
    head = spec.head
    args = ["gateway", "--name", GATEWAY_NODE, "--log-level", level,
            "--heartbeat-s", str(spec.settings.heartbeat_interval_s),
            "--acceptable-pause-s", str(spec.settings.acceptable_pause_s)]  # fmt: skip
    if head.keys is not None:  # the keys directory holds a key pair for the gateway too
        args += ["--keys", str(spec.resolve(head.keys)), "--connect", f"{head.name}={head_address}"]
    else:
        args += ["--connect", head_address]
    if head.insecure:  # plaintext off loopback, and listeners other hosts reach, as allowed
        args.append("--insecure")
    return NodeChild(GATEWAY_NODE, args + _gateway_flags(spec), env=_gateway_env(spec))


def _gateway_flags(spec: TopologySpec) -> list[str]:
    """The ``gateway:`` section as ``macp gateway``'s flags (paths from the file's folder)."""
    gateway = spec.gateway
    flags: list[str] = []
    for flag, value in (("--jsonrpc", gateway.jsonrpc), ("--mcp-http", gateway.mcp_http),
                        ("--http", gateway.http), ("--jwt-audience", gateway.jwt_audience),
                        ("--jwt-issuer", gateway.jwt_issuer)):  # fmt: skip
        if value is not None:
            flags += [flag, value]
    for flag, path in (("--jwt-key-file", gateway.jwt_key_file), ("--keys-db", gateway.keys_db),
                       ("--audit-db", gateway.audit_db), ("--tls-cert", gateway.tls_cert),
                       ("--tls-key", gateway.tls_key)):  # fmt: skip
        if path is not None:
            flags += [flag, str(spec.resolve(path))]
    limits = {"--rate-per-principal": gateway.rate_per_principal,
              "--rate-per-connection": gateway.rate_per_connection,
              "--submissions-per-min": gateway.submissions_per_min,
              "--websockets-per-principal": gateway.websockets_per_principal}  # fmt: skip
    for flag, limit in limits.items():
        flags += [flag, str(limit)]
    return flags


def _gateway_env(spec: TopologySpec) -> dict[str, str]:
    """The gateway's environment: the secret of ``jwt_secret_env`` as the one it reads."""
    from macp.gateway.auth import JWT_SECRET_ENV  # noqa: PLC0415 - the gateway only if served

    name = spec.gateway.jwt_secret_env
    if name is None:
        return {}
    secret = os.environ.get(name)
    if not secret:
        fail(f"gateway.jwt_secret_env names ${name}, which is not set: set it to the tokens' "
             "secret (32 bytes or more) before macp up")  # fmt: skip
    return {JWT_SECRET_ENV: secret}


def stop_all(processes: list[NodeChild]) -> None:
    for process in reversed(processes):
        process.stop()
