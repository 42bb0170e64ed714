"""The gateway's place in the cluster: a member node of its own, joined through any member.

A member (not a client) so that it can host the actors the gateway needs (its events
subscriber, the proxies of agents outside Python) and be reached by every node directly.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Self

from macp.cluster import Cluster
from macp.errors import AskTimeout, ConfigError
from macp.gateway.bridge import Runtime
from macp.node import Node

if TYPE_CHECKING:
    import os
    from types import TracebackType

    from macp.settings import Settings

__all__ = ["Member"]


class Member:
    """The gateway's node, its cluster handle and the runtime operations run against.

    Build it with :meth:`join`; :meth:`close` leaves the cluster.
    """

    def __init__(self, node: Node, cluster: Cluster) -> None:
        self.node = node
        self.cluster = cluster
        self.runtime = Runtime(cluster)

    @classmethod
    def join(
        cls,
        address: str,
        *,
        name: str | None = None,
        listen: str = "tcp://127.0.0.1:0",
        keys: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        settings: Settings | None = None,
        timeout_s: float = 10.0,
    ) -> Self:
        """Start a member node that joins the cluster through ``address`` and learns its head.

        Args:
            address: any member (``tcp://HOST:PORT``, or ``NAME=tcp://...`` with ``keys``).
            name: the node's name (default ``gateway-`` and a short unique suffix).
            listen: where the other nodes reach it.
            timeout_s: how long to wait for the member to answer with the cluster's head.

        Raises:
            ConfigError: a bad address, name or keys directory, or the member knows no head.
            AskTimeout: the member did not answer in time (the message names it).
        """
        node = Node(
            name or f"gateway-{uuid.uuid4().hex[:8]}", listen=listen, join=address, keys=keys,
            insecure=insecure, settings=settings,
        ).start()  # fmt: skip
        try:
            return cls(node, _cluster_of(node, address, timeout_s))
        except BaseException:
            node.stop()
            raise

    def close(self) -> None:
        """Leave the cluster: stop the gateway's node."""
        self.node.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _cluster_of(node: Node, address: str, timeout_s: float) -> Cluster:
    """The cluster ``node`` joined through ``address``, once the member has named its head."""
    router = node.router
    assert router is not None  # a node that joins has a transport
    if node.head is None and not router.joined.wait(timeout_s):
        raise AskTimeout(
            f"no answer from {address} within {timeout_s:g} s; is a node of the cluster "
            "running there?"
        )
    if node.head is None:
        raise ConfigError(
            f"the member at {address} knows no head; start one node of the cluster with "
            "--control-plane"
        )
    return Cluster(node, timeout_s=timeout_s)
