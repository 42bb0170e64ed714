"""Who calls, and whether they may: principals, roles, and the guard every transport calls
operations through.

Every transport (MCP over stdio or HTTP, JSON-RPC over TCP, REST, WebSocket) runs an
operation as ``await guard.call(operation, runtime, arguments, principal=..., transport=...)``;
the guard decides, for the caller's :class:`Principal`, whether the operation's scope is
allowed, and only then runs it. A gateway with no authentication configured (loopback only,
or ``--insecure``) serves everyone as :meth:`Principal.local`; the standard input of
``macp mcp`` is always the user who started it.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from macp.errors import MacpError, RateLimited, Unauthorized
from macp.gateway.audit import Outcome
from macp.gateway.auth import MEMORY_SCOPES, ROLE_SCOPES, Principal, Role

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.gateway.audit import AuditLog
    from macp.gateway.auth import Auth
    from macp.gateway.bridge import Runtime
    from macp.gateway.quotas import Quotas
    from macp.gateway.table import Operation

__all__ = ["ROLE_SCOPES", "Guard", "Principal", "Role", "Transport"]


class Transport(enum.StrEnum):
    """How a call came in (the audit log says)."""

    MCP_STDIO = "mcp-stdio"
    MCP_HTTP = "mcp-http"
    JSONRPC = "jsonrpc"
    REST = "rest"
    WEBSOCKET = "websocket"


class Guard:
    """Decides each call: the principal's role must hold the operation's scope, and for the
    memory operations the principal must hold the ``namespace`` argument's grant.

    Args:
        auth: how credentials are checked (:class:`~macp.gateway.auth.Auth`: JWTs, API keys);
            ``None``: no authentication, :meth:`authenticate` refuses every credential (there
            is nothing to check it against) and transports serve :meth:`Principal.local`.
    """

    def __init__(
        self,
        auth: Auth | None = None,
        *,
        audit: AuditLog | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.auth = auth
        self.audit = audit
        """Where every call is recorded (:mod:`macp.gateway.audit`), if anywhere."""
        self.quotas = quotas
        """The gateway's limiter (:mod:`macp.gateway.quotas`), if it limits."""
        self.counts: Counter[tuple[Transport, str]] = Counter()
        """Calls by transport and outcome (``ok``, ``denied``, ``error``, ``limited``)."""

    @property
    def configured(self) -> bool:
        """Whether authentication is set up (then every transport asks for a credential)."""
        return self.auth is not None

    def authenticate(self, credential: str) -> Principal:
        """The principal ``credential`` (a bearer token, with or without ``Bearer ``, or an
        API key) proves.

        Raises:
            Unauthorized: the credential is not valid (the message says why, in one sentence:
                expired, wrong signature, wrong audience or issuer, unknown or revoked key).
        """
        if self.auth is None:
            raise Unauthorized(
                "this gateway has no authentication configured, so it takes no credentials; "
                "connect without one (loopback only)"
            )
        return self.auth.authenticate(credential)

    def check(
        self, operation: Operation[Any], arguments: Mapping[str, Any] | None, principal: Principal
    ) -> None:
        """Refuse ``operation`` with ``arguments`` to ``principal`` unless it may call it.

        Raises:
            Unauthorized: the role does not hold the scope, or (memory) the namespace is not
                granted; the message names the principal, the operation and what it lacks.
        """
        if not principal.may(operation.scope):
            raise Unauthorized(
                f"{principal.name} ({principal.role}) may not call {operation.name}: it needs "
                f"the {operation.scope} scope"
            )
        if operation.scope in MEMORY_SCOPES:
            namespace = _namespace(operation, arguments)
            if namespace is not None and not principal.may_use(namespace):
                held = ", ".join(f"memory:{n}" for n in sorted(principal.memory_grants))
                raise Unauthorized(
                    f"{principal.name} ({principal.role}) may not call {operation.name} on "
                    f"namespace {namespace!r}: it holds {held} only"
                )

    async def call(
        self,
        operation: Operation[Any],
        runtime: Runtime,
        arguments: Mapping[str, Any] | None,
        *,
        principal: Principal,
        transport: Transport,
        connection: str | None = None,
    ) -> Any:
        """Run ``operation`` for ``principal`` if it is within its limits and may
        (:meth:`check`); every outcome is counted and audited with its duration.

        Args:
            connection: which of the transport's connections it came on, for the audit log.

        Raises:
            RateLimited: over a limit of the principal (``data["retry_after_s"]``).
            Unauthorized: it may not (the message names the principal and what it lacks).
            MacpError: what the operation raises.
        """
        started_ms, started = time.time_ns() // 1_000_000, time.perf_counter()
        outcome, code = Outcome.ERROR, None
        try:
            if self.quotas is not None:
                self.quotas.admit(principal.name, operation.name)
            self.check(operation, arguments, principal)
            result = await operation.call(runtime, arguments)
        except BaseException as e:
            outcome, code = _outcome_of(e)
            raise
        else:
            outcome = Outcome.OK
            return result
        finally:
            self.counts[transport, outcome] += 1
            if self.audit is not None:
                self.audit.record(
                    principal=principal.name, role=principal.role, via=principal.via,
                    transport=transport, connection=connection, operation=operation.name,
                    arguments=arguments, outcome=outcome, code=code, started_ms=started_ms,
                    duration_s=time.perf_counter() - started,
                )  # fmt: skip

    def note(
        self,
        action: str,
        *,
        principal: Principal | None,
        transport: Transport,
        outcome: Outcome,
        code: int | None = None,
        arguments: Mapping[str, Any] | None = None,
        connection: str | None = None,
    ) -> None:
        """Count and audit one action that is not an operation of the table (a WebSocket's
        ``agent_register``) as :meth:`call` does its calls; ``principal`` ``None``: the
        caller did not prove who it is (audited as ``anonymous``)."""
        self.counts[transport, outcome] += 1
        if self.audit is None:
            return
        name, role, via = (("anonymous", "", "none") if principal is None
                           else (principal.name, principal.role, principal.via))  # fmt: skip
        self.audit.record(
            principal=name, role=role, via=via, transport=transport, connection=connection,
            operation=action, arguments=arguments, outcome=outcome, code=code,
            started_ms=time.time_ns() // 1_000_000, duration_s=0.0,
        )  # fmt: skip


def _outcome_of(exc: BaseException) -> tuple[Outcome, int | None]:
    """How a call that raised ``exc`` ended, and its code (``None``: cancelled)."""
    if isinstance(exc, RateLimited):
        return Outcome.LIMITED, exc.code
    if isinstance(exc, Unauthorized):
        return Outcome.DENIED, exc.code
    if isinstance(exc, MacpError):
        return Outcome.ERROR, exc.code
    return Outcome.ERROR, None


def _namespace(operation: Operation[Any], arguments: Mapping[str, Any] | None) -> str | None:
    """The memory namespace a call names (its default if not given); ``None`` if it is not a
    string (the operation's own check refuses it)."""
    if isinstance(arguments, dict) and "namespace" in arguments:
        given = arguments["namespace"]
        return given if isinstance(given, str) else None
    field = operation.params.model_fields.get("namespace")
    default = None if field is None else field.get_default(call_default_factory=True)
    return default if isinstance(default, str) else None
