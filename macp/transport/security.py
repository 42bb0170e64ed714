"""Security between nodes: CURVE encryption and a ZAP allow-list of node keys, from ``zmq.auth``.

A keys directory holds one certificate pair per node, made by ``macp keys generate DIR --name
NODE``: ``NODE.key`` (public) and ``NODE.key_secret`` (secret). A node started with that
directory uses its own secret key, and admits only peers whose public key is in the directory.
A peer's name is the name of its key file: the name a peer *claims* must match the key it
authenticated with, so no node can speak under another's name. Copy every ``*.key`` to every
host, and each host's own ``*.key_secret`` only to that host.

Without keys, traffic is plaintext; that is allowed on a loopback address only, unless the
user says ``insecure``.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import zmq
import zmq.auth
import zmq.utils.z85
from zmq.auth.thread import ThreadAuthenticator

from macp.address import check_name
from macp.errors import ConfigError

if TYPE_CHECKING:
    import os

__all__ = [
    "Keys",
    "check_bind",
    "check_endpoint",
    "generate_keys",
    "is_loopback",
    "start_authenticator",
]

_MAX_PORT: Final = 65535
_DENIALS_KEPT: Final = 64
_ADDRESS: Final = 3  # the frames of a ZAP request: version, id, domain, address, identity,
_CREDENTIALS: Final = 6  # mechanism, credentials (for CURVE, the client's public key)
_KEY_BYTES: Final = 32


def generate_keys(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write a CURVE key pair for node ``name`` into ``directory``; the (public, secret) paths.

    Raises:
        ConfigError: the name is invalid, a key of that name exists, or the directory is not
            writable.
    """
    check_name(name, "node")
    folder = Path(directory)
    if (folder / f"{name}.key_secret").exists():
        raise ConfigError(
            f"{folder / (name + '.key_secret')} already exists; delete it or pick another name"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(folder, name)
        Path(secret).chmod(0o600)
    except OSError as e:
        raise ConfigError(f"cannot write keys into {folder}: {e.strerror}") from e
    return Path(public), Path(secret)


@dataclass(frozen=True)
class Keys:
    """A node's own key pair and the public keys of the nodes it admits, by name."""

    name: str
    public: bytes
    secret: bytes
    peers: dict[str, bytes]

    @classmethod
    def load(cls, directory: str | os.PathLike[str], name: str) -> Keys:
        """Load node ``name``'s key pair and every public key in ``directory``.

        Raises:
            ConfigError: the directory or the node's secret key is missing or unreadable.
        """
        folder = Path(directory)
        secret_file = folder / f"{name}.key_secret"
        if not secret_file.is_file():
            raise ConfigError(
                f"keys: {secret_file} not found; create it with `macp keys generate {folder} "
                f"--name {name}`"
            )
        try:
            public, secret = zmq.auth.load_certificate(secret_file)
            peers = {path.stem: zmq.auth.load_certificate(path)[0] for path in folder.glob("*.key")}
        except (OSError, ValueError) as e:
            raise ConfigError(f"keys: cannot read the certificates in {folder}: {e}") from e
        if secret is None:
            raise ConfigError(f"keys: {secret_file} holds no secret key")
        return cls(name, public, secret, peers)

    def public_of(self, node: str) -> bytes:
        """The public key of peer ``node``.

        Raises:
            ConfigError: the directory holds no key for ``node``.
        """
        try:
            return self.peers[node]
        except KeyError:
            raise ConfigError(
                f"keys: no public key for node {node!r}; copy {node}.key into the keys directory"
            ) from None

    def name_of(self, public_z85: str) -> str | None:
        """The node name a z85-encoded public key belongs to, if allowed."""
        key = public_z85.encode("ascii")
        return next((name for name, public in self.peers.items() if public == key), None)

    def server(self, socket: zmq.Socket[bytes]) -> None:
        """Make ``socket`` a CURVE server with this node's key pair."""
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def client(self, socket: zmq.Socket[bytes], peer: str) -> None:
        """Make ``socket`` a CURVE client of node ``peer``."""
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_serverkey = self.public_of(peer)


class _NamingAuthenticator(ThreadAuthenticator):
    """A ZAP handler whose User-Id for a CURVE peer is that peer's node name, and which keeps
    the address and key of the last peers it refused (the I/O thread names them in its log)."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], keys: Keys) -> None:
        super().__init__(context)
        self._keys = keys
        self.denials: deque[tuple[str, str]] = deque(maxlen=_DENIALS_KEPT)  # (address, key)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        """Answer one ZAP request (on the authenticator's thread), keeping a refused CURVE peer.

        The peer is kept before the answer goes (the I/O thread may look as soon as libzmq
        has the answer), and taken back if it is admitted. Requests are answered one by one.
        """
        if len(msg) > _CREDENTIALS:
            key = msg[_CREDENTIALS]
            z85 = zmq.utils.z85.encode(key).decode("ascii") if len(key) == _KEY_BYTES else "?"
            self.denials.append((msg[_ADDRESS].decode("utf-8", "replace"), z85))
        await super().handle_zap_message(msg)

    def curve_user_id(self, client_public_key: bytes) -> str:
        with contextlib.suppress(IndexError):  # called for an allowed key only: not refused
            self.denials.pop()
        name = self._keys.name_of(zmq.utils.z85.encode(client_public_key).decode("ascii"))
        return name or "?"


def start_authenticator(
    context: zmq.Context[zmq.Socket[bytes]], keys: Keys, directory: str | os.PathLike[str]
) -> ThreadAuthenticator:
    """Start the ZAP handler of ``context`` admitting the public keys in ``directory``."""
    auth = _NamingAuthenticator(context, keys)
    auth.start()
    auth.configure_curve(domain="*", location=str(directory))
    return auth


def is_loopback(address: str) -> bool:
    """Whether a ``tcp://host:port`` (or ``ipc://``/``inproc://``) address stays on this host."""
    scheme, _, rest = address.partition("://")
    if scheme in {"ipc", "inproc"}:
        return True
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(address: object, what: str, *, bind: bool = False) -> str:
    """Return ``address`` if it is a ZeroMQ endpoint a node can use, else raise ConfigError.

    ``what`` names the field (``listen address``, ``peer 'b'``, ...); ``bind``: it is an
    address to listen on (where port 0 means any free port).
    """
    scheme, sep, rest = address.partition("://") if isinstance(address, str) else ("", "", "")
    hint = " (PORT 0 picks a free one)" if bind else ""
    if scheme == "tcp" and sep:
        host, colon, port = rest.rpartition(":")
        lowest = 0 if bind else 1  # a port to connect to is a real one, never 0 or *
        fits = port.isdigit() and lowest <= int(port) <= _MAX_PORT
        bracketed = host.startswith("[") == host.endswith("]")  # an IPv6 host is [::1]
        if colon and host and bracketed and (fits or (bind and port == "*")):
            return str(address)
        if colon and host and bracketed:
            hint = f" (PORT {lowest}-{_MAX_PORT}{'; 0 picks a free one' if bind else ''})"
    elif scheme in {"ipc", "inproc"} and sep and rest:
        return str(address)
    raise ConfigError(f"{what} {address!r} is invalid; use tcp://HOST:PORT{hint}")


def check_bind(address: str, *, keys: Keys | None, insecure: bool) -> None:
    """Refuse a plaintext bind on a non-loopback address unless ``insecure`` is set.

    Raises:
        ConfigError: the address is not a valid endpoint, or the bind would be open plaintext.
    """
    check_endpoint(address, "listen address", bind=True)
    if keys is None and not insecure and not is_loopback(address):
        raise ConfigError(
            f"refusing to listen on {address} without keys: anyone who can reach it could send "
            "to this node; pass --keys DIR (see `macp keys generate`) or --insecure"
        )
