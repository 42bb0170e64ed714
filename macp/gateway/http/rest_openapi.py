"""The OpenAPI 3.1 document of the REST routes, made from their operations' pydantic models:
a route's JSON body (or, for GET and DELETE, its query parameters) is its operation's
parameters, less those its path gives."""

from __future__ import annotations

import copy
import re
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Final

from macp.gateway.http.rest import API

if TYPE_CHECKING:
    from collections.abc import Sequence

    from macp.gateway.http.rest import RestRoute

__all__ = ["openapi"]

_REFS: Final = "#/components/schemas/{model}"
_ERROR: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "data"],
        "properties": {
            "code": {"type": "integer", "description": "The macp error code (-32602, ...)."},
            "message": {"type": "string", "description": "What went wrong, in one sentence."},
            "field": {"type": "string", "description": "The parameter at fault, if one is."},
            "data": {"type": "object", "description": "'error': the error's class; more."},
        },
    }},
}  # fmt: skip
_PLAIN: Final = {"type": "object", "additionalProperties": True}


def openapi(routes: Sequence[RestRoute]) -> dict[str, Any]:
    """The document: every route, with ``/health`` and ``/ready``."""
    schemas: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.full_path, {})[route.method.lower()] = _operation(route, schemas)
    probes = (
        ("/health", "Liveness: the gateway's process answers."),
        ("/ready", ("Readiness: the cluster's head answers, within a short timeout (503 while "
         "it does not).")),
    )  # fmt: skip
    for path, summary in probes:
        for served in (path, API + path):
            paths[served] = {"get": {
                "operationId": f"get_{served.strip('/').replace('/', '_')}", "summary": summary,
                "security": [], "responses": {
                    "200": {"description": "Yes.", "content": _json(_PLAIN)},
                    "503": {"description": "No.", "content": _json(_PLAIN)},
                },
            }}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "macp gateway", "version": version("macp"),
                 "description": "macp's management API: agents, tasks, pipelines, metrics."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A JWT, or an API key."}},
        },
        "security": [{"bearer": []}],
    }  # fmt: skip


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(route: RestRoute, schemas: dict[str, Any]) -> dict[str, Any]:
    op = route.operation
    schema = copy.deepcopy(op.params.model_json_schema(ref_template=_REFS))
    schemas.update(schema.pop("$defs", {}))
    properties: dict[str, Any] = schema.get("properties", {})
    parameters = []
    for name in route.params_in_path:
        argument = route.path_params.get(name, name)
        described = properties.pop(argument, {})
        schema["required"] = [r for r in schema.get("required", []) if r != argument]
        parameters.append({"name": name, "in": "path", "required": True,
                           "description": described.get("description", argument),
                           "schema": {"type": "string"}})  # fmt: skip
    answer: dict[str, Any] = {
        "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{route.method} {route.path}").strip("_")
        .lower(),
        "summary": route.summary or op.summary,
        "description": f"Runs the operation {op.name}; it needs the {op.scope} scope.",
        "tags": [route.path.strip("/").split("/")[0]],
        "parameters": parameters,
        "responses": {
            str(route.status): {"description": "Done.", "content": _json(_PLAIN)},
            "default": {"description": "An error.",
                        "content": _json({"$ref": _REFS.format(model="Error")})},
        },
    }  # fmt: skip
    if route.body_params:
        answer["requestBody"] = {"required": bool(schema.get("required")),
                                 "content": _json(schema)}  # fmt: skip
    else:
        required = set(schema.get("required", []))
        parameters.extend(
            {"name": name, "in": "query", "required": name in required,
             "description": prop.get("description", name), "schema": prop}
            for name, prop in properties.items()
        )  # fmt: skip
    return answer
