"""The gateway: macp served to other processes, other languages and LLM clients.

One table of operations (:data:`~macp.gateway.ops.OPERATIONS`, built from
:class:`~macp.gateway.table.Operation`) is served by every transport the gateway runs; each
operation acts on the real runtime through :class:`~macp.gateway.bridge.Runtime`.
"""

from __future__ import annotations

from macp.gateway.bridge import Runtime, settled
from macp.gateway.guard import Guard, Principal, Role, Transport
from macp.gateway.http.events import EventHub
from macp.gateway.jsonrpc import JsonRpcLimits, JsonRpcServer
from macp.gateway.member import Member
from macp.gateway.ops import OPERATIONS
from macp.gateway.server import Gateway
from macp.gateway.table import Operation, Params, Scope, Table, error_of

__all__ = [
    "OPERATIONS",
    "EventHub",
    "Gateway",
    "Guard",
    "JsonRpcLimits",
    "JsonRpcServer",
    "Member",
    "Operation",
    "Params",
    "Principal",
    "Role",
    "Runtime",
    "Scope",
    "Table",
    "Transport",
    "error_of",
    "settled",
]
