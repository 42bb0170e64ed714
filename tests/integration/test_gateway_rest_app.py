"""The HTTP app's many small cases through Starlette's TestClient, against a real cluster (a
head process, a worker process with real agents): the OpenAPI document, errors with their
code, message, field and HTTP status, and who may call what."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from gateway_cluster import cluster_procs, member
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from starlette.testclient import TestClient

from macp.errors import RateLimited, Unauthorized
from macp.gateway import Guard, Principal, Role
from macp.gateway.http import http_app
from macp.gateway.http.rest import error_response
from macp.gateway.http.rest_routes import rest_routes
from macp.gateway.ops import OPERATIONS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from macp.gateway import Member

pytestmark = pytest.mark.integration
__all__ = ["cluster_procs", "member"]  # the fixtures, used by name

ISSUE_ROUTES = [
    ("get", "/api/v1/agents"), ("get", "/api/v1/agents/{id}"), ("delete", "/api/v1/agents/{id}"),
    ("post", "/api/v1/tasks"), ("get", "/api/v1/tasks/{id}"), ("post", "/api/v1/tasks/{id}/cancel"),
    ("post", "/api/v1/pipelines"), ("post", "/api/v1/pipelines/{id}/execute"),
    ("get", "/api/v1/pipelines/{id}"), ("post", "/api/v1/pipelines/{id}/pause"),
    ("post", "/api/v1/pipelines/{id}/resume"), ("post", "/api/v1/pipelines/{id}/cancel"),
    ("get", "/api/v1/metrics"), ("get", "/health"), ("get", "/ready"),
]  # fmt: skip


class Tokens(Guard):
    """A guard that knows a few fixed tokens (the gateway's own authentication is another
    part's: here only what REST does with a principal is tested)."""

    def __init__(self, tokens: dict[str, Role]) -> None:
        super().__init__()
        self.tokens = tokens

    @property
    def configured(self) -> bool:
        return True

    def authenticate(self, credential: str) -> Principal:
        role = self.tokens.get(credential)
        if role is None:
            raise Unauthorized("the token is not valid")
        return Principal(f"user-{role}", role, "jwt")


@pytest.fixture
def client(member: Member) -> Iterator[TestClient]:
    with TestClient(http_app(member.runtime), raise_server_exceptions=True) as served:
        yield served


@pytest.fixture
def guarded(member: Member) -> Iterator[TestClient]:
    guard = Tokens({"v": Role.VIEWER, "o": Role.OPERATOR, "a": Role.AGENT})
    with TestClient(http_app(member.runtime, guard)) as served:
        yield served


def error(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()["error"]
    assert set(body) <= {"code", "message", "field", "data"}
    return body


def test_the_openapi_document_names_every_route_with_valid_schemas(client: TestClient) -> None:
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"] == "3.1.0"
    served = {(m, p) for p, item in document["paths"].items() for m in item}
    assert set(ISSUE_ROUTES) <= served
    routes = rest_routes(OPERATIONS)
    assert {(r.method.lower(), r.full_path) for r in routes} <= served
    assert {("post", f"/api/v1/operations/{name}") for name in OPERATIONS.names()} <= served
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for item in document["paths"].values():
        for op in item.values():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body:
                Draft202012Validator.check_schema(body["schema"])
    create = document["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]
    priority = create["application/json"]["schema"]["properties"]["priority"]
    assert priority["enum"] == ["low", "medium", "high", "critical"]
    get_task = document["paths"]["/api/v1/tasks/{id}"]["get"]
    assert get_task["parameters"][0] == {"name": "id", "in": "path", "required": True,
        "description": "The task's id, as POST /tasks answered it.",
        "schema": {"type": "string"}}  # fmt: skip
    schemas = document["components"]["schemas"]
    assert "Stage" in schemas  # a nested model, referred to from the pipelines' body
    assert "#/components/schemas/Stage" in str(document["paths"]["/api/v1/pipelines"])


def test_a_bad_parameter_is_422_naming_the_route_and_the_field(client: TestClient) -> None:
    body = error(client.post("/api/v1/tasks", json={"type": "echo", "priority": "urgent"}), 422)
    assert body["code"] == -32602
    assert body["field"] == "priority"
    assert body["message"].startswith("POST /api/v1/tasks: 'priority' ")
    assert body["data"]["error"] == "InvalidParams"
    missing = error(client.post("/api/v1/tasks", json={}), 422)
    assert (missing["field"], missing["message"]) == (
        "type",
        "POST /api/v1/tasks: 'type' is required",
    )
    unknown = error(client.post("/api/v1/tasks", json={"type": "echo", "retries": 2}), 422)
    assert unknown["field"] == "retries"
    assert "unknown key 'retries'" in unknown["message"]
    stage = error(client.post("/api/v1/pipelines", json={"stages": [{"name": "a"}]}), 422)
    assert stage["field"] == "stages[0].type"


def test_a_body_that_is_not_a_json_object_is_refused(client: TestClient) -> None:
    body = error(client.post("/api/v1/tasks", content=b"{nope"), 422)
    assert body["message"].startswith("the request body is not JSON: ")
    listed = error(client.post("/api/v1/tasks", json=[1]), 422)
    assert listed["message"] == "the request body must be a JSON object, not list"


def test_what_a_path_names_and_does_not_exist_is_404(client: TestClient) -> None:
    task = error(client.get("/api/v1/tasks/no-such-task"), 404)
    assert (task["code"], task["field"], task["data"]["error"]) == (-32602, "id", "NotFound")
    assert task["message"].startswith("no task 'no-such-task'")
    assert error(client.post("/api/v1/tasks/no-such-task/cancel"), 404)["field"] == "id"
    pipeline = error(client.get("/api/v1/pipelines/nothing-here"), 404)
    assert pipeline["message"] == "no pipeline 'nothing-here'; POST /api/v1/pipelines creates one"
    assert error(client.post("/api/v1/pipelines/nothing-here/execute"), 404)["field"] == "id"
    assert error(client.post("/api/v1/pipelines/nothing-here/pause"), 404)["code"] == -32602
    agent = error(client.get("/api/v1/agents/nobody"), 404)
    assert agent["data"]["error"] == "ActorNotFound"
    route = error(client.get("/api/v1/nowhere"), 404)
    assert route["message"] == "no route GET /api/v1/nowhere; /api/v1/openapi.json lists them"
    assert error(client.put("/api/v1/tasks"), 405)["code"] == -32601


def test_a_pipeline_never_run_and_bad_dependencies_are_named(client: TestClient) -> None:
    stages = [{"name": "a", "type": "echo"}, {"name": "b", "type": "echo"}]
    created = client.post("/api/v1/pipelines", json={"id": "idle", "stages": stages,
                                                     "dependencies": {"b": ["a"]}})  # fmt: skip
    assert created.status_code == 201
    assert created.json()["dependencies"] == {"a": [], "b": ["a"]}
    never = error(client.get("/api/v1/pipelines/idle"), 404)
    assert never["message"] == (
        "pipeline 'idle' has not been run; POST /api/v1/pipelines/idle/execute runs it"
    )
    wrong = {"stages": stages, "dependencies": {"c": ["a"]}}
    body = error(client.post("/api/v1/pipelines", json=wrong), 422)
    assert body["message"].startswith("POST /api/v1/pipelines: 'dependencies' names stage 'c'")
    cycle = {"stages": stages, "dependencies": {"a": ["b"], "b": ["a"]}}
    assert "cycle" in error(client.post("/api/v1/pipelines", json=cycle), 422)["message"]


def test_no_credential_or_a_bad_one_is_401_and_a_role_without_the_scope_403(
    guarded: TestClient,
) -> None:
    none = guarded.get("/api/v1/agents")
    assert error(none, 401)["code"] == -32006
    assert none.headers["www-authenticate"] == "Bearer"
    bad = error(guarded.get("/api/v1/agents", headers={"Authorization": "Bearer x"}), 401)
    assert bad["message"] == "the token is not valid"
    basic = error(guarded.get("/api/v1/agents", headers={"Authorization": "Basic dTpw"}), 401)
    assert basic["message"].startswith("the Authorization header must be 'Bearer TOKEN'")
    viewer = {"Authorization": "Bearer v"}
    assert guarded.get("/api/v1/agents", headers=viewer).status_code == 200
    refused = error(guarded.post("/api/v1/tasks", json={"type": "echo"}, headers=viewer), 403)
    assert refused["message"] == (
        "user-viewer (viewer) may not call rest_task_create: it needs the tasks:write scope"
    )
    agent = {"X-API-Key": "a"}
    assert error(guarded.post("/api/v1/pipelines/x/cancel", headers=agent), 403)["code"] == -32006
    operator = {"Authorization": "Bearer o"}
    assert guarded.post("/api/v1/tasks", json={"type": "echo"}, headers=operator).status_code == 201
    define = {"stages": [{"name": "a", "type": "t"}]}
    denied = guarded.post("/api/v1/pipelines", json=define, headers=operator)
    assert error(denied, 403)["data"]["error"] == "Unauthorized"
    assert guarded.get("/health").status_code == 200  # no credential needed


def test_a_rate_limited_call_is_429_with_retry_after() -> None:
    answer = error_response(RateLimited("too many requests", data={"retry_after_s": 2.5}))
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "3"
    assert b'"code":-32000' in answer.body


def test_ready_answers_while_the_head_does(client: TestClient) -> None:
    answer = client.get("/ready")
    assert answer.status_code == 200
    assert answer.json()["ready"] is True
    assert client.get("/api/v1/ready").json()["ready"] is True
