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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from macp.errors import MacpError, RateLimited, Unauthorized
from macp.gateway.audit import Outcome
from macp.gateway.table import Scope

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.gateway.audit import AuditLog
    from macp.gateway.bridge import Runtime
    from macp.gateway.quotas import Quotas
    from macp.gateway.table import Operation

__all__ = ["ROLE_SCOPES", "Guard", "Principal", "Role", "Transport"]


class Role(enum.StrEnum):
    """What a principal is: ``viewer`` (looks), ``operator`` (submits, controls, stores),
    ``admin`` (everything), ``agent`` (an external agent or a service acting for one)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    AGENT = "agent"


class Transport(enum.StrEnum):
    """How a call came in (the audit log says)."""

    MCP_STDIO = "mcp-stdio"
    MCP_HTTP = "mcp-http"
    JSONRPC = "jsonrpc"
    REST = "rest"
    WEBSOCKET = "websocket"


ROLE_SCOPES: Final[Mapping[Role, frozenset[Scope]]] = {
    Role.VIEWER: frozenset({Scope.READ}),
    Role.OPERATOR: frozenset({Scope.READ, Scope.OPERATE}),
    Role.ADMIN: frozenset(Scope),
    Role.AGENT: frozenset({Scope.READ}),
}
"""The scopes each role holds."""


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller: its name (a user, an API key's owner), role, and how it proved who it is.

    Args:
        name: who (a JWT's subject, an API key's principal, ``local``).
        role: what it may do (:data:`ROLE_SCOPES`).
        via: how it was authenticated: ``jwt``, ``api-key`` or ``local`` (trusted: the user
            who started the process, or anyone on a gateway with no authentication).
        claims: what else its credential said (a token's claims), for the audit log.
    """

    name: str
    role: Role
    via: str = "local"
    claims: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def local(cls) -> Principal:
        """The user who started the process (or anyone, on a gateway with no auth): admin."""
        return cls("local", Role.ADMIN, "local")

    def may(self, scope: Scope) -> bool:
        return scope in ROLE_SCOPES[self.role]


class Guard:
    """Decides each call: the principal's role must hold the operation's scope.

    With no authentication configured, :meth:`authenticate` refuses every credential (there is
    nothing to check it against) and transports serve :meth:`Principal.local`.
    """

    def __init__(self, *, audit: AuditLog | None = None, quotas: Quotas | None = None) -> None:
        self.configured = False
        self.audit = audit
        """Where every call is recorded (:mod:`macp.gateway.audit`), if anywhere."""
        self.quotas = quotas
        """The gateway's limiter (:mod:`macp.gateway.quotas`), if it limits."""
        self.counts: Counter[tuple[Transport, str]] = Counter()
        """Calls by transport and outcome (``ok``, ``denied``, ``error``, ``limited``)."""

    def authenticate(self, credential: str) -> Principal:
        """The principal ``credential`` (a bearer token or an API key) proves.

        Raises:
            Unauthorized: the credential is not valid (the message says why, in one sentence).
        """
        del credential  # nothing to check it against
        raise Unauthorized(
            "this gateway has no authentication configured, so it takes no credentials; "
            "connect without one (loopback only)"
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
        """Run ``operation`` for ``principal``, if it is within its limits and its role holds
        the operation's scope; every outcome is counted and audited with its duration.

        Args:
            connection: which of the transport's connections it came on, for the audit log.

        Raises:
            RateLimited: over a limit of the principal (``data["retry_after_s"]``).
            Unauthorized: the role does not hold the scope (the message names both).
            MacpError: what the operation raises.
        """
        started_ms, started = time.time_ns() // 1_000_000, time.perf_counter()
        outcome, code = Outcome.ERROR, None
        try:
            if self.quotas is not None:
                self.quotas.admit(principal.name, operation.name)
            _check_scope(principal, operation)
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


def _check_scope(principal: Principal, operation: Operation[Any]) -> None:
    if not principal.may(operation.scope):
        raise Unauthorized(
            f"{principal.name} ({principal.role}) may not call {operation.name}: it needs the "
            f"{operation.scope} scope"
        )


def _outcome_of(exc: BaseException) -> tuple[Outcome, int | None]:
    """How a call that raised ``exc`` ended, and its code (``None``: cancelled)."""
    if isinstance(exc, RateLimited):
        return Outcome.LIMITED, exc.code
    if isinstance(exc, Unauthorized):
        return Outcome.DENIED, exc.code
    if isinstance(exc, MacpError):
        return Outcome.ERROR, exc.code
    return Outcome.ERROR, None
