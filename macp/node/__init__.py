"""The node: one process's runtime, the root of its supervision tree (:class:`Node`)."""

from __future__ import annotations

from macp.node._node import CLIENT as CLIENT
from macp.node._node import Node as Node

__all__ = ["CLIENT", "Node"]
