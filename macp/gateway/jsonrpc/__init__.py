"""JSON-RPC 2.0 over TCP, newline-delimited: the operations table served to any language that
can open a socket (``printf '{"jsonrpc":"2.0","id":1,"method":"ping"}\\n' | nc -q1 HOST 9500``).

:class:`JsonRpcServer` is the listener (asyncio, one task per connection, bounded per
connection by :class:`JsonRpcLimits`); :class:`Dispatcher` turns one message into its answer.
"""

from __future__ import annotations

from macp.gateway.jsonrpc._dispatch import PROTOCOL_VERSIONS, RATE_LIMITED, Dispatcher, Session
from macp.gateway.jsonrpc._server import JsonRpcLimits, JsonRpcServer

__all__ = [
    "PROTOCOL_VERSIONS",
    "RATE_LIMITED",
    "Dispatcher",
    "JsonRpcLimits",
    "JsonRpcServer",
    "Session",
]
