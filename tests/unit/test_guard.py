"""The guard: a role holds scopes; an operation outside them is refused in one sentence
naming the principal, the operation and the scope, and counted; a gateway with no
authentication takes no credentials."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from macp import Unauthorized
from macp.gateway import OPERATIONS, Guard, Principal, Role, Scope, Transport


def call(guard: Guard, name: str, principal: Principal) -> Any:
    return asyncio.run(
        guard.call(OPERATIONS[name], None, {}, principal=principal, transport=Transport.JSONRPC)  # type: ignore[arg-type]
    )


def test_a_viewer_may_read_but_not_operate() -> None:
    guard = Guard()
    viewer = Principal("ann", Role.VIEWER, "jwt")
    assert call(guard, "ping", viewer)["status"] == "ok"
    with pytest.raises(
        Unauthorized, match=r"^ann \(viewer\) may not call task_cancel: it needs the operate scope$"
    ):
        call(guard, "task_cancel", viewer)
    assert guard.counts == {(Transport.JSONRPC, "ok"): 1, (Transport.JSONRPC, "denied"): 1}


def test_roles_hold_what_they_say() -> None:
    assert Principal.local().may(Scope.ADMIN)
    assert Principal("op", Role.OPERATOR).may(Scope.OPERATE)
    assert not Principal("op", Role.OPERATOR).may(Scope.ADMIN)
    assert not Principal("a", Role.AGENT).may(Scope.OPERATE)


def test_a_gateway_with_no_authentication_takes_no_credentials() -> None:
    with pytest.raises(Unauthorized, match="no authentication configured"):
        Guard().authenticate("a-token")
