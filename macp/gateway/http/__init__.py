"""The gateway over HTTP: one Starlette app (:func:`http_app`) serving REST under
``/api/v1`` (:mod:`.rest`, routes in :mod:`.rest_routes`, OpenAPI in :mod:`.rest_openapi`),
``/health``, ``/ready``, MCP at ``/mcp``, and the WebSocket at ``/ws`` (:mod:`.ws`) with the
events it serves (:mod:`.events`)."""

from __future__ import annotations

from macp.gateway.http.app import READY_TIMEOUT_S, http_app
from macp.gateway.http.rest import API, RestRoute, error_response, http_status
from macp.gateway.http.rest_ops import PRIORITIES, REST_OPERATIONS, STATUS_OF

__all__ = [
    "API",
    "PRIORITIES",
    "READY_TIMEOUT_S",
    "REST_OPERATIONS",
    "STATUS_OF",
    "RestRoute",
    "error_response",
    "http_app",
    "http_status",
]
