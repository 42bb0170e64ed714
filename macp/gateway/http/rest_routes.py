"""The REST routes, each an operation at a path: the management panel's routes (agents and
their registration, tasks, pipelines, metrics), and every operation of the table at ``POST
/api/v1/operations/NAME`` with its parameters as the JSON body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from macp.gateway.guard import Guard
from macp.gateway.http import rest_pipelines as _pipelines  # noqa: F401 - registers them
from macp.gateway.http.rest import RestRoute
from macp.gateway.http.rest_agents import register_operation, websocket_of
from macp.gateway.http.rest_ops import REST_OPERATIONS

if TYPE_CHECKING:
    from macp.gateway.table import Table

__all__ = ["rest_routes"]


def rest_routes(table: Table, guard: Guard | None = None) -> list[RestRoute]:
    """The routes over ``table`` (the gateway's operations) and REST's own operations, on a
    gateway whose calls ``guard`` decides (default: one with no authentication)."""
    rest = REST_OPERATIONS
    ident = {"id": "id"}
    routes = [
        RestRoute("GET", "/agents", table["agent_list"]),
        RestRoute("GET", "/agents/{id}", table["agent_status"], {"id": "agent"}),
        RestRoute("DELETE", "/agents/{id}", rest["rest_agent_terminate"], ident),
        RestRoute(
            "POST",
            "/agents/register",
            register_operation(guard or Guard()),
            status=201,
            finish=websocket_of,
        ),
        RestRoute("GET", "/tasks", table["task_list"]),
        RestRoute("POST", "/tasks", rest["rest_task_create"], status=201),
        RestRoute("GET", "/tasks/{id}", rest["rest_task_get"], ident),
        RestRoute("POST", "/tasks/{id}/cancel", rest["rest_task_cancel"], ident),
        RestRoute("GET", "/pipelines", table["workflow_list"]),
        RestRoute("POST", "/pipelines", rest["rest_pipeline_create"], status=201),
        RestRoute("GET", "/pipelines/{id}", rest["rest_pipeline_get"], ident),
        RestRoute(
            "POST", "/pipelines/{id}/execute", rest["rest_pipeline_execute"], ident, status=201
        ),
        RestRoute("POST", "/pipelines/{id}/pause", rest["rest_pipeline_pause"], ident),
        RestRoute("POST", "/pipelines/{id}/resume", rest["rest_pipeline_resume"], ident),
        RestRoute("POST", "/pipelines/{id}/cancel", rest["rest_pipeline_cancel"], ident),
        RestRoute("GET", "/metrics", table["metrics"]),
        RestRoute("GET", "/alerts", table["alert_list"]),
    ]
    routes += [RestRoute("POST", f"/operations/{op.name}", op) for op in table]
    return routes
