"""Who calls: a principal, its role, and the scopes and memory namespaces that role holds."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from macp.gateway.table import Scope

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ALL_NAMESPACES", "MEMORY_SCOPES", "ROLE_SCOPES", "Principal", "Role"]


class Role(enum.StrEnum):
    """What a principal is: ``viewer`` (looks), ``operator`` (submits, controls, stores),
    ``admin`` (everything), ``agent`` (an external agent or a service acting for one)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    AGENT = "agent"


_READ: Final = frozenset({
    Scope.SYSTEM_READ, Scope.AGENTS_READ, Scope.TASKS_READ, Scope.WORKFLOWS_READ,
    Scope.MEMORY_READ, Scope.LOCKS_READ, Scope.RESOURCES_READ,
})  # fmt: skip

_OPERATE: Final = frozenset({
    Scope.TASKS_WRITE, Scope.WORKFLOWS_WRITE, Scope.CONTROL, Scope.AGENTS_MESSAGE,
    Scope.MEMORY_WRITE, Scope.LOCKS_WRITE, Scope.RESOURCES_WRITE,
})  # fmt: skip
_AGENT: Final = frozenset({
    Scope.SYSTEM_READ, Scope.AGENTS_REGISTER, Scope.MEMORY_READ, Scope.MEMORY_WRITE,
})  # fmt: skip

ROLE_SCOPES: Final[Mapping[Role, frozenset[Scope]]] = {
    Role.VIEWER: _READ,
    Role.OPERATOR: _READ | _OPERATE,
    Role.ADMIN: frozenset(Scope),
    Role.AGENT: _AGENT,
}
"""The scopes each role holds. An agent holds only what an external agent needs: ``ping``,
registering itself, and the memory of its own namespaces."""

MEMORY_SCOPES: Final = frozenset({Scope.MEMORY_READ, Scope.MEMORY_WRITE})
"""The scopes checked again against the operation's ``namespace`` argument."""

ALL_NAMESPACES: Final = "*"
"""The memory grant that opens every namespace (``memory:*``)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller: its name (a user, an API key's owner), role, and how it proved who it is.

    Args:
        name: who (a JWT's subject, an API key's principal, ``local``).
        role: what it may do (:data:`ROLE_SCOPES`).
        via: how it was authenticated: ``jwt``, ``api-key`` or ``local`` (trusted: the user
            who started the process, or anyone on a gateway with no authentication).
        claims: what else its credential said (a token's claims, an API key's id), for the
            audit log.
        namespaces: memory namespaces granted beyond the role's own (an API key's, a token's
            ``namespaces`` claim); ``*`` is every namespace.
    """

    name: str
    role: Role
    via: str = "local"
    claims: Mapping[str, Any] = field(default_factory=dict)
    namespaces: frozenset[str] = frozenset()

    @classmethod
    def local(cls) -> Principal:
        """The user who started the process (or anyone, on a gateway with no auth): admin."""
        return cls("local", Role.ADMIN, "local")

    def may(self, scope: Scope) -> bool:
        """Whether the role holds ``scope``."""
        return scope in ROLE_SCOPES[self.role]

    @property
    def memory_grants(self) -> frozenset[str]:
        """The memory namespaces this principal may use: every one (``*``) for a viewer,
        operator or admin; an agent's own ``agent:<name>``; plus :attr:`namespaces`."""
        own = f"agent:{self.name}" if self.role is Role.AGENT else ALL_NAMESPACES
        return self.namespaces | {own}

    def may_use(self, namespace: str) -> bool:
        """Whether the memory namespace ``namespace`` is granted (``memory:NAMESPACE``)."""
        grants = self.memory_grants
        return ALL_NAMESPACES in grants or namespace in grants
