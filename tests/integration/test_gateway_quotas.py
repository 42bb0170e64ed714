"""Rate limits and quotas: one limiter per gateway, per principal (requests a second, task
submissions a minute, WebSockets open), per connection (requests a second); over a limit is
RateLimited, -32000 with retry_after_s, and once the window has moved on calls pass again."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import pytest
from jsonrpc_client import LineClient
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS

from macp import ConfigError, RateLimited, Unauthorized
from macp.gateway import (
    OPERATIONS,
    Auth,
    Gateway,
    Guard,
    JwtKey,
    JwtVerifier,
    Member,
    Principal,
    Role,
    Transport,
)
from macp.gateway.audit import AuditLog, read_records
from macp.gateway.quotas import QuotaLimits, Quotas
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from macp.gateway import Runtime
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

NO_RUNTIME = cast("Runtime", None)  # ping and refused calls never reach the runtime
ANN = Principal("ann", Role.VIEWER, "jwt")
BOB = Principal("bob", Role.VIEWER, "jwt")


def call(guard: Guard, name: str, principal: Principal) -> Any:
    return asyncio.run(
        guard.call(OPERATIONS[name], NO_RUNTIME, {}, principal=principal, transport=Transport.REST)
    )


def test_a_principal_over_its_requests_a_second_is_limited_then_passes_again() -> None:
    guard = Guard(quotas=Quotas(QuotaLimits(requests_per_s=5)))
    for _ in range(5):
        assert call(guard, "ping", ANN)["status"] == "ok"
    with pytest.raises(RateLimited, match=r"^ann calls more than 5 operations a second; retry"):
        call(guard, "ping", ANN)
    with pytest.raises(RateLimited) as refused:
        call(guard, "ping", ANN)
    assert refused.value.code == -32000
    assert 0 < refused.value.retry_after_s <= 1.0
    assert call(guard, "ping", BOB)["status"] == "ok"  # another principal is not held back

    def passes() -> bool:
        try:
            return bool(call(guard, "ping", ANN)["status"] == "ok")
        except RateLimited:
            return False

    wait_until(passes, 5, "ann was never admitted again", poll_s=0.05)
    assert guard.counts[Transport.REST, "limited"] >= 2


def test_submissions_a_minute_count_before_the_scope_and_refusals_are_audited(
    tmp_path: Path,
) -> None:
    limits = QuotaLimits(requests_per_s=0, submissions_per_min=2)
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        guard = Guard(audit=log, quotas=Quotas(limits))
        # a viewer may not submit: denied, yet counted (limits come before the scope check)
        for name in ("task_orchestrate", "workflow_execute"):
            with pytest.raises(Unauthorized, match="may not call"):
                call(guard, name, ANN)
        with pytest.raises(RateLimited, match=r"^ann submits more than 2 tasks a minute; retry"):
            call(guard, "task_orchestrate", ANN)
        assert call(guard, "ping", ANN)["status"] == "ok"  # not a submission
        with pytest.raises(Unauthorized, match="may not call"):
            call(guard, "task_orchestrate", BOB)  # bob has his own quota
        assert log.flush()
        outcomes = [(r.principal, r.operation, r.outcome) for r in read_records(log.path)]
    assert outcomes == [
        ("ann", "task_orchestrate", "denied"),
        ("ann", "workflow_execute", "denied"),
        ("ann", "task_orchestrate", "limited"),
        ("ann", "ping", "ok"),
        ("bob", "task_orchestrate", "denied"),
    ]


def test_a_submission_refused_says_when_to_retry_within_the_minute() -> None:
    quotas = Quotas(QuotaLimits(submissions_per_min=1))
    quotas.admit("ann", "workflow_execute")
    with pytest.raises(RateLimited) as refused:
        quotas.admit("ann", "task_orchestrate")
    assert 55 < refused.value.retry_after_s <= 60


def test_websockets_a_principal_holds_are_capped_and_freed_on_close() -> None:
    quotas = Quotas(QuotaLimits(websockets=2))
    with quotas.websocket("ann"), quotas.websocket("ann"):
        third = quotas.websocket("ann")
        with pytest.raises(RateLimited, match=r"^ann has 2 WebSockets open, the most it may"):
            third.__enter__()
        with quotas.websocket("bob"):
            pass
    with quotas.websocket("ann"), quotas.websocket("ann"):  # both slots free again
        pass


def test_a_limit_that_is_not_a_whole_number_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"^gateway limit 'requests_per_s' must be a whole"):
        QuotaLimits(requests_per_s=-1)


@pytest.fixture
def head(procs: Callable[..., NodeProcess], tmp_path: Path) -> str:
    node = procs("head", "--control-plane", "--journal", str(tmp_path / "j.db"),
                 *QUICK_CLUSTER_FLAGS)  # fmt: skip
    assert node.address is not None
    return node.address


@pytest.fixture
def gateway(head: str) -> Iterator[Gateway]:
    member = Member.join(head, name="gw", settings=QUICK_CLUSTER)
    quotas = Quotas(QuotaLimits(connection_requests_per_s=3))
    with Gateway(member, jsonrpc="127.0.0.1:0", quotas=quotas) as served:
        yield served


def test_a_json_rpc_connection_over_its_requests_a_second_is_limited_then_recovers(
    gateway: Gateway,
) -> None:
    address = gateway.addresses["jsonrpc"]
    with LineClient(address) as busy, LineClient(address) as other:
        busy.send([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(5)])
        answers = busy.receive()
        refused = [a["error"] for a in answers if "error" in a]
        assert len(refused) == 2
        for error in refused:
            assert error["code"] == -32000
            assert error["data"]["error"] == "RateLimited"
            assert 0 < error["data"]["retry_after_s"] <= 1.0
        assert other.result("ping")["status"] == "ok"  # the limit is the connection's
        wait_until(lambda: "result" in busy.call("ping"), 5, "never admitted again",
                   poll_s=0.05)  # fmt: skip


def test_requests_refused_by_a_connections_limit_and_a_failed_initialize_are_audited(
    head: str, tmp_path: Path
) -> None:
    member = Member.join(head, name="gw", settings=QUICK_CLUSTER)
    secret = JwtKey.secret("k" * 32)
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        guard = Guard(Auth(jwt=JwtVerifier(secret)), audit=log)
        quotas = Quotas(QuotaLimits(connection_requests_per_s=2))
        with (
            Gateway(member, jsonrpc="127.0.0.1:0", guard=guard, quotas=quotas) as served,
            LineClient(served.addresses["jsonrpc"]) as client,
        ):
            client.send([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(3)])
            assert sum("error" in a for a in client.receive()) == 1
            wait_until(lambda: "result" in client.call("ping"), 5, "never admitted again",
                       poll_s=0.05)  # fmt: skip
            refused = client.call("initialize", {"auth": {"token": "not-a-token"}})
            assert refused["error"]["code"] == -32006
        assert log.flush()
    records = [(r.operation, r.principal, r.outcome, r.code) for r in read_records(log.path)]
    assert ("ping", "anonymous", "limited", -32000) in records
    assert records[-1] == ("initialize", "anonymous", "denied", -32006)
    noted = [r for r in read_records(log.path) if r.outcome in {"limited", "denied"}]
    assert noted
    assert all(r.connection for r in noted)  # the client's address
