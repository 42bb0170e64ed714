"""REST under ``/api/v1``: each route made from one operation, a path, and how the path's
parameters and the request's JSON body (or, for GET, its query string) become its arguments.

Every call goes through :meth:`Guard.call <macp.gateway.guard.Guard.call>` with the principal
the request proves (``Authorization: Bearer TOKEN``, or ``X-API-Key: KEY``; on a gateway with
no authentication, none: :meth:`Principal.local`). A failure is ``{"error": {"code",
"message", "field"?, "data"}}`` with the HTTP status :func:`http_status` gives its class.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from macp.errors import (
    ActorNotFound,
    AskTimeout,
    Cancelled,
    ConfigError,
    InvalidParams,
    MacpError,
    NodeDown,
    NotFound,
    ProtocolError,
    ResourceUnavailable,
    Unauthorized,
)
from macp.gateway.dashboard import session
from macp.gateway.guard import Principal, Transport
from macp.gateway.table import error_of

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from starlette.requests import Request

    from macp.gateway.bridge import Runtime
    from macp.gateway.guard import Guard
    from macp.gateway.table import Operation

__all__ = ["API", "RATE_LIMITED", "RestRoute", "error_response", "http_status", "principal_of"]

API: Final = "/api/v1"
"""Where the REST routes are."""

RATE_LIMITED: Final = -32000
"""The code of a call over its rate limit or quota: HTTP 429 with ``Retry-After``."""

_STATUS: Final[tuple[tuple[type[MacpError], int], ...]] = (
    (NotFound, 404), (ActorNotFound, 404), (InvalidParams, 422), (ConfigError, 400),
    (ProtocolError, 400), (Unauthorized, 403), (AskTimeout, 504), (NodeDown, 503),
    (ResourceUnavailable, 503), (Cancelled, 409),
)  # fmt: skip
_FIELD: Final = re.compile(r"^[^:']*: (?:unknown key )?'([^']+)'")


def http_status(exc: BaseException) -> int:
    """The HTTP status of an error: 404 not found, 422 invalid parameters, 400 other bad
    input, 403 not allowed, 429 rate limited, 504 timed out, 503 the cluster unavailable, 409
    cancelled, 500 anything else."""
    if isinstance(exc, MacpError) and exc.code == RATE_LIMITED:
        return 429
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 500)


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), default=str).encode()


def error_response(
    exc: BaseException, status: int | None = None, *, where: str | None = None
) -> Response:
    """``exc`` as REST answers it. ``where`` (``METHOD PATH``) replaces the operation's name
    at the head of a parameter error's message."""
    error = error_of(exc)
    message: str = error["message"]
    if where is not None:
        message = re.sub(r"^rest_[a-z_]+: |^[a-z_]+: ", f"{where}: ", message, count=1)
    body: dict[str, Any] = {"code": error["code"], "message": message}
    found = error["data"].get("field")
    if found is None and isinstance(exc, InvalidParams):
        match = _FIELD.match(error["message"])
        found = match.group(1) if match else None
    if found is not None:
        body["field"] = found
    body["data"] = error["data"]
    status = status or http_status(exc)
    headers = {}
    if status == 429:  # noqa: PLR2004
        retry = error["data"].get("retry_after_s")
        headers["Retry-After"] = str(
            max(1, math.ceil(retry if isinstance(retry, int | float) else 1))
        )
    elif status == 401:  # noqa: PLR2004
        headers["WWW-Authenticate"] = "Bearer"
    return _Json({"error": body}, status, headers=headers)


def principal_of(request: Request, guard: Guard) -> Principal:
    """Who sent ``request``: the principal its bearer token or API key proves, else the
    dashboard's session cookie (:mod:`macp.gateway.dashboard.session`); with none, on a
    gateway with no authentication, :meth:`Principal.local`.

    Raises:
        Unauthorized: the credential is refused, malformed, or missing where one is needed; a
            cookie-authenticated request that changes state lacks the CSRF header; or, with no
            authentication, another site's page sent a request that changes state.
    """
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, credential = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthorized(
                "the Authorization header must be 'Bearer TOKEN' (a JWT or an API key)"
            )
        return guard.authenticate(credential.strip())
    key = request.headers.get("x-api-key")
    if key is not None:
        return guard.authenticate(key.strip())
    cookie = session.credential_of(request)
    if cookie is not None and guard.configured:
        session.check_csrf(request.method, request)
        return guard.authenticate(cookie)
    if guard.configured:
        raise Unauthorized(
            "this gateway needs a credential: send 'Authorization: Bearer TOKEN' (a JWT, or an "
            "API key from macp gateway keys)"
        )
    session.check_local(request.method, request)
    return Principal.local()


@dataclass(frozen=True, slots=True)
class RestRoute:
    """One REST route: ``method`` on ``path`` (under :data:`API`) runs ``operation``.

    Args:
        path_params: the operation's argument each path parameter is (default: its own name).
        status: the HTTP status of a success (201 for what creates something).
        summary: what the route does (default: the operation's summary).
        finish: makes the answer from the request and the operation's result (e.g. a URL the
            request's own address gives).
    """

    method: str
    path: str
    operation: Operation[Any]
    path_params: Mapping[str, str] = field(default_factory=dict)
    status: int = 200
    summary: str | None = None
    finish: Callable[[Request, Any], Any] | None = None

    @property
    def full_path(self) -> str:
        return API + self.path

    @property
    def params_in_path(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)

    @property
    def body_params(self) -> bool:
        """Whether the arguments come in a JSON body (else in the query string)."""
        return self.method not in {"GET", "DELETE"}

    def route(self, runtime: Runtime, guard: Guard) -> Route:
        """The Starlette route that serves it."""
        where = f"{self.method} {self.full_path}"

        async def endpoint(request: Request) -> Response:
            try:
                principal = principal_of(request, guard)
            except Unauthorized as e:
                return error_response(e, 401)
            try:
                arguments = await self._arguments(request)
                result = await guard.call(
                    self.operation, runtime, arguments, principal=principal,
                    transport=Transport.REST,
                )  # fmt: skip
            except MacpError as e:
                return error_response(e, where=where)
            if self.finish is not None:
                result = self.finish(request, result)
            return _Json(result, self.status)

        return Route(self.full_path, endpoint, methods=[self.method], name=self.operation.name)

    async def _arguments(self, request: Request) -> dict[str, Any]:
        arguments: dict[str, Any]
        if self.body_params:
            raw = await request.body()
            try:
                parsed = json.loads(raw) if raw.strip() else {}
            except ValueError as e:
                raise InvalidParams(f"the request body is not JSON: {e}") from None
            if not isinstance(parsed, dict):
                raise InvalidParams(
                    f"the request body must be a JSON object, not {type(parsed).__name__}"
                )
            arguments = parsed
        else:
            arguments = self._query(request)
        for name, value in request.path_params.items():
            arguments[self.path_params.get(name, name)] = value
        return arguments

    def _query(self, request: Request) -> dict[str, Any]:
        """The query string as arguments: a key given twice, or a list field, is a list."""
        properties = self.operation.input_schema().get("properties", {})
        arguments: dict[str, Any] = {}
        for key in request.query_params:
            values = request.query_params.getlist(key)
            is_list = "array" in json.dumps(properties.get(key, {}))
            arguments[key] = values if is_list or len(values) > 1 else values[0]
        return arguments
