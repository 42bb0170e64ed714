"""Building a node's transport: its addresses and keys checked, then the :class:`Router`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from macp.address import check_name
from macp.transport.router import Router
from macp.transport.security import Keys, check_bind, check_endpoint

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.settings import Settings
    from macp.transport.callbacks import Callbacks

__all__ = ["make_router"]


def make_router(
    name: str,
    listen: str | None,
    callbacks: Callbacks,
    *,
    settings: Settings,
    incarnation: str,
    peers: Mapping[str, str] | None,
    join: str | None,
    keys: str | os.PathLike[str] | None,
    insecure: bool,
    gateway: str | None,
) -> Router:
    """The transport of node ``name``, its addresses and keys checked first (see
    :class:`~macp.node.Node`).

    Raises:
        ConfigError: a bad address, or keys directory; a plaintext listen address that is not
            loopback, without ``insecure``.
    """
    for peer, peer_address in (peers or {}).items():
        check_endpoint(peer_address, f"peer {check_name(peer, 'peer')!r} address")
    for what, spec in (("join", join), ("connect", gateway)):
        if spec is not None:
            check_endpoint(spec.rpartition("=")[2], f"{what} address")
    key_name = "client" if gateway is not None else name
    loaded: Keys | None = Keys.load(keys, key_name) if keys is not None else None
    if listen is not None:
        check_bind(listen, keys=loaded, insecure=insecure)
    return Router(
        name,
        listen,
        callbacks,
        settings=settings,
        incarnation=incarnation,
        peers=peers,
        join=join,
        keys=loaded,
        keys_dir=None if keys is None else os.fspath(keys),
        gateway=gateway,
    )
