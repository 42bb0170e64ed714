"""The guard: a role holds scopes; an operation outside them is refused in one sentence
naming the principal, the operation and the scope, and counted; memory operations are checked
against the namespace they name; a gateway with no authentication takes no credentials."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from macp import Unauthorized
from macp.gateway import OPERATIONS, Guard, Principal, Role, Scope, Transport
from macp.gateway.auth import ROLE_SCOPES


def call(guard: Guard, name: str, principal: Principal, arguments: Any = None) -> Any:
    runtime: Any = None  # ping needs none; a refused call never reaches it
    called = guard.call(OPERATIONS[name], runtime, arguments or {}, principal=principal,
                        transport=Transport.JSONRPC)  # fmt: skip
    return asyncio.run(called)


def test_a_viewer_may_read_but_not_submit_or_cancel() -> None:
    guard = Guard()
    viewer = Principal("ann", Role.VIEWER, "jwt")
    assert call(guard, "ping", viewer)["status"] == "ok"
    with pytest.raises(
        Unauthorized,
        match=r"^ann \(viewer\) may not call task_cancel: it needs the tasks:write scope$",
    ):
        call(guard, "task_cancel", viewer)
    with pytest.raises(Unauthorized, match=r"task_orchestrate: it needs the tasks:write scope$"):
        call(guard, "task_orchestrate", viewer, {"type": "x"})
    assert guard.counts == {(Transport.JSONRPC, "ok"): 1, (Transport.JSONRPC, "denied"): 2}


def test_roles_hold_what_they_say() -> None:
    assert Principal.local().may(Scope.AGENTS_ADMIN)
    operator = Principal("op", Role.OPERATOR)
    assert operator.may(Scope.TASKS_WRITE)
    assert operator.may(Scope.CONTROL)
    assert operator.may(Scope.WORKFLOWS_WRITE)
    assert not operator.may(Scope.AGENTS_ADMIN)
    assert not operator.may(Scope.WORKFLOWS_DEFINE)
    agent = Principal("a", Role.AGENT)
    assert not agent.may(Scope.CONTROL)
    assert not agent.may(Scope.TASKS_WRITE)
    assert agent.may(Scope.AGENTS_REGISTER)
    assert ROLE_SCOPES[Role.VIEWER] == {s for s in Scope if s.value.endswith(":read")}
    assert ROLE_SCOPES[Role.ADMIN] == set(Scope)


def test_an_agent_uses_the_memory_of_its_own_namespace_only() -> None:
    guard = Guard()
    agent = Principal("bob", Role.AGENT, "api-key")
    with pytest.raises(
        Unauthorized,
        match=r"^bob \(agent\) may not call memory_store on namespace 'default': it holds "
        r"memory:agent:bob only$",
    ):
        call(guard, "memory_store", agent, {"key": "k", "value": 1})
    with pytest.raises(Unauthorized, match=r"memory_retrieve on namespace 'agent:eve'"):
        call(guard, "memory_retrieve", agent, {"namespace": "agent:eve", "key": "k"})
    granted = Principal("bob", Role.AGENT, "api-key", namespaces=frozenset({"shared"}))
    guard.check(OPERATIONS["memory_list"], {"namespace": "shared"}, granted)
    guard.check(OPERATIONS["memory_list"], {"namespace": "agent:bob"}, granted)
    guard.check(OPERATIONS["memory_list"], {"namespace": "anything"}, Principal.local())


def test_a_gateway_with_no_authentication_takes_no_credentials() -> None:
    guard = Guard()
    assert not guard.configured
    with pytest.raises(Unauthorized, match="no authentication configured"):
        guard.authenticate("a-token")
