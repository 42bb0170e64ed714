"""Agents in any language: a program connected over the gateway's WebSocket is a member of the
runtime through a proxy agent (:class:`ExternalAgent`) that the gateway spawns for it.

The WebSocket endpoint hands a connection whose first message is ``register`` to
:func:`run_agent_session`; the protocol is documented in docs/gateway.md ("Agents in any
language").
"""

from __future__ import annotations

from macp.gateway.external._messages import (
    CLOSE_INVALID,
    CLOSE_TAKEN,
    CLOSE_UNAUTHORIZED,
    Register,
    register_of,
)
from macp.gateway.external._proxy import ExternalAgent, Link
from macp.gateway.external._session import AgentSocket, run_agent_session

__all__ = [
    "CLOSE_INVALID",
    "CLOSE_TAKEN",
    "CLOSE_UNAUTHORIZED",
    "AgentSocket",
    "ExternalAgent",
    "Link",
    "Register",
    "register_of",
    "run_agent_session",
]
