"""Which node hosts the control plane, as a node or a client of one finds out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from macp.errors import AskTimeout, ConfigError
from macp.node import Node

if TYPE_CHECKING:
    from macp.runtime import NodeRuntime

__all__ = ["head_of"]


def head_of(node: NodeRuntime, timeout_s: float) -> str:
    """The head ``node`` knows; a client asks the member it connects through.

    Raises:
        AskTimeout: the client's member did not answer (the message says what to check).
        ConfigError: no head is known: the message says how to start one.
    """
    head = node.head
    router = node.router if isinstance(node, Node) else None  # a client is a Node
    gateway = router.gateway if router is not None else None
    if head is None and gateway is not None:
        try:
            info = node.ask_node("*", "node.info", timeout_s=timeout_s).get()
        except AskTimeout:
            keys = router.keys_dir if router is not None else None
            also = "" if keys is None else (
                ", and does its keys directory hold this client's public key "
                f"({Path(keys) / 'client.key'})"
            )  # fmt: skip
            raise AskTimeout(
                f"no answer from {gateway} within {timeout_s:g} s; is a node running there{also}?"
            ) from None
        head = info.get("head")
        if head is None:
            raise ConfigError(
                f"no control plane at {gateway}: node {info.get('name')!r} there knows no "
                "head; start one node of the cluster with --control-plane"
            )
    if head is None:
        raise ConfigError(
            f"node {node.name!r} knows no head: pass head= to Node, or start the control "
            "plane on it (start_control_plane)"
        )
    return str(head)
