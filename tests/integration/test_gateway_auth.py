"""Authentication and roles over the real transports: a gateway member of a real cluster (a
head and a worker as processes, real agents) serving JSON-RPC over TCP and MCP over HTTP on
127.0.0.1, with JWTs and API keys; `macp gateway token` and `keys` as processes; the
off-loopback rule; HTTPS with a certificate made here."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import ssl
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gateway_cluster import cluster_procs, member
from jsonrpc_client import LineClient
from procs import TESTS

from macp import ConfigError
from macp.gateway import Auth, Gateway, Guard, JwtKey, JwtVerifier, KeyStore, issue_token
from macp.gateway.auth import Tls

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from macp.gateway import Member

__all__ = ["cluster_procs", "member"]

pytestmark = pytest.mark.integration

SECRET = "an-hs256-secret-of-at-least-32-bytes!"
KEY = JwtKey.secret(SECRET)
SQUARE = {"type": "square", "body": {"x": 7}, "capabilities": ["square"]}
UNAUTHORIZED = -32006


def token(role: str, subject: str = "ann", **options: Any) -> str:
    return issue_token(KEY, subject=subject, role=role, **options)


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyStore]:
    with KeyStore(tmp_path / "keys.sqlite3") as store:
        yield store


@pytest.fixture
def opened() -> Iterator[list[McpHttp]]:
    """The MCP clients a test opens, closed when it ends."""
    clients: list[McpHttp] = []
    yield clients
    for client in clients:
        client.http.close()


@pytest.fixture
def gateway(member: Member, keys: KeyStore) -> Iterator[Gateway]:
    guard = Guard(Auth(jwt=JwtVerifier(KEY), keys=keys))
    served = Gateway(member, jsonrpc="127.0.0.1:0", mcp_http="127.0.0.1:0", guard=guard)
    served.start()
    try:
        yield served
    finally:
        served.stop()


def error_of(response: dict[str, Any]) -> tuple[int, str]:
    assert "error" in response, response
    return response["error"]["code"], response["error"]["message"]


def initialized(gateway: Gateway, credential: str) -> LineClient:
    client = LineClient(gateway.addresses["jsonrpc"])
    client.result("initialize", {"auth": {"token": credential}})
    return client


def test_jsonrpc_before_initialize_only_ping_is_served(gateway: Gateway) -> None:
    with LineClient(gateway.addresses["jsonrpc"]) as client:
        assert client.result("ping")["status"] == "ok"
        code, message = error_of(client.call("task_list"))
        assert code == UNAUTHORIZED
        assert message.startswith("task_list: this gateway needs a credential first: call "
                                  'initialize with params {"auth": {"token": ')  # fmt: skip
        assert error_of(client.call("tools/list"))[0] == UNAUTHORIZED
        code, message = error_of(client.call("initialize", {}))
        assert (code, message.split(":")[0]) == (UNAUTHORIZED, "initialize")


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (token("admin", ttl_s=60, now=time.time() - 120),
         r"^the token expired at .*; get a new one$"),
        (issue_token(JwtKey.secret("x" * 32), subject="ann", role="admin"),
         r"^the token's signature does not verify with this gateway's key"),
        (token("admin", audience="billing"),
         r"^the token's audience \(aud\) is not 'macp-gateway'"),
        (token("admin", issuer="evil"), r"^the token's issuer \(iss\) is not 'macp'$"),
        ("macpk_0123456789abcdef_nope", r"^unknown API key 0123456789abcdef"),
    ],
    ids=["expired", "wrong-signature", "wrong-audience", "wrong-issuer", "unknown-key"],
)  # fmt: skip
def test_jsonrpc_refuses_a_bad_credential_in_initialize(
    gateway: Gateway, credential: str, reason: str
) -> None:
    with LineClient(gateway.addresses["jsonrpc"]) as client:
        code, message = error_of(client.call("initialize", {"auth": {"token": credential}}))
        assert code == UNAUTHORIZED
        assert re.search(reason, message), message
        assert error_of(client.call("task_list"))[0] == UNAUTHORIZED


def test_jsonrpc_a_viewer_reads_but_cannot_submit_an_operator_can(gateway: Gateway) -> None:
    with initialized(gateway, token("viewer")) as viewer:
        assert "tasks" in viewer.result("task_list")
        code, message = error_of(viewer.call("task_orchestrate", SQUARE))
        assert (code, message) == (
            UNAUTHORIZED,
            "ann (viewer) may not call task_orchestrate: it needs the tasks:write scope",
        )  # fmt: skip
        called = viewer.result("tools/call", {"name": "task_orchestrate", "arguments": SQUARE})
        assert called["isError"] is True
        assert called["structuredContent"]["code"] == UNAUTHORIZED
    with initialized(gateway, token("operator", subject="olga")) as operator:
        started = operator.result(
            "initialize", {"auth": {"token": token("operator", subject="olga")}}
        )
        assert started["principal"] == {"name": "olga", "role": "operator", "via": "jwt"}
        task_id = operator.result("task_orchestrate", SQUARE)["task_id"]
        done = operator.result("task_result", {"task_id": task_id, "wait_s": 20})
        assert done["done"] is True
        assert done["result"]["square"] == 49


def test_jsonrpc_an_agent_key_cannot_control_others_and_keeps_to_its_namespace(
    gateway: Gateway, keys: KeyStore
) -> None:
    _, key = keys.create("worker-7", "agent")
    with initialized(gateway, key) as agent:
        code, message = error_of(
            agent.call("agent_control", {"command": "pause", "target": "sq1@w1"})
        )
        assert (code, message) == (
            UNAUTHORIZED, "worker-7 (agent) may not call agent_control: it needs the control scope"
        )  # fmt: skip
        assert error_of(agent.call("task_orchestrate", SQUARE))[0] == UNAUTHORIZED
        own = {"namespace": "agent:worker-7", "key": "k", "value": 1}
        assert agent.result("memory_store", own)["stored"] is True
        other = {"namespace": "agent:sq1", "key": "k", "value": 1}
        code, message = error_of(agent.call("memory_store", other))
        assert code == UNAUTHORIZED
        assert message.endswith("on namespace 'agent:sq1': it holds memory:agent:worker-7 only")


def test_a_revoked_key_is_refused_at_once_on_a_connection_already_open(
    gateway: Gateway, keys: KeyStore
) -> None:
    record, key = keys.create("svc", "operator")
    with initialized(gateway, key) as client:
        assert "tasks" in client.result("task_list")
        revoke = macp("gateway", "keys", "revoke", record.id, "--keys-db", str(keys.path))
        assert revoke.returncode == 0, revoke.stderr
        assert revoke.stdout.strip() == f"revoked API key {record.id} of svc"
        code, message = error_of(client.call("task_list"))
        assert code == UNAUTHORIZED
        assert message.startswith(f"API key {record.id} was revoked at ")
    with LineClient(gateway.addresses["jsonrpc"]) as fresh:
        assert error_of(fresh.call("initialize", {"auth": {"token": key}}))[0] == UNAUTHORIZED


class McpHttp:
    """A raw MCP client over streamable HTTP: each request with its own headers."""

    def __init__(self, url: str, credential: str | None, **client: Any) -> None:
        self.url = url
        self.headers = {"Accept": "application/json, text/event-stream"}
        if credential is not None:
            self.headers["Authorization"] = f"Bearer {credential}"
        self.http = httpx.Client(timeout=30, **client)

    def post(self, message: dict[str, Any]) -> httpx.Response:
        return self.http.post(self.url, json=message, headers=self.headers)

    def start(self) -> None:
        answer = self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}})  # fmt: skip
        assert answer.status_code == 200, answer.text
        self.headers["mcp-session-id"] = answer.headers["mcp-session-id"]
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                            "params": {"name": name, "arguments": arguments}})  # fmt: skip
        assert answer.status_code == 200, answer.text
        lines = [
            ln.removeprefix("data:") for ln in answer.text.splitlines() if ln.startswith("data:")
        ]
        message = json.loads(lines[-1] if lines else answer.text)
        result: dict[str, Any] = message["result"]
        return result


def test_mcp_http_needs_a_bearer_credential_on_every_request(
    gateway: Gateway, opened: list[McpHttp]
) -> None:
    url = gateway.addresses["mcp_http"]
    anonymous, expired, session = (
        McpHttp(url, None), McpHttp(url, token("admin", ttl_s=60, now=time.time() - 120)),
        McpHttp(url, token("admin")),
    )  # fmt: skip
    opened += [anonymous, expired, session]
    refused = anonymous.post({"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith(
        'Bearer realm="macp", error="invalid_token"'
    )
    assert refused.json()["error"]["code"] == UNAUTHORIZED
    answer = expired.post({"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    assert answer.status_code == 401
    assert answer.json()["error"]["message"].startswith("the token expired at ")
    session.start()
    session.headers["Authorization"] = "Bearer " + token("admin", audience="other")
    assert session.post({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).status_code == 401


def test_mcp_http_a_viewer_cannot_submit_an_operator_can(
    gateway: Gateway, keys: KeyStore, opened: list[McpHttp]
) -> None:
    viewer = McpHttp(gateway.addresses["mcp_http"], token("viewer"))
    opened.append(viewer)
    viewer.start()
    assert viewer.call("ping", {})["structuredContent"]["status"] == "ok"
    refused = viewer.call("task_orchestrate", SQUARE)
    assert refused["isError"] is True
    assert refused["structuredContent"]["message"] == (
        "ann (viewer) may not call task_orchestrate: it needs the tasks:write scope"
    )
    _, key = keys.create("ci", "operator")
    operator = McpHttp(gateway.addresses["mcp_http"], key)
    opened.append(operator)
    operator.start()
    task_id = operator.call("task_orchestrate", SQUARE)["structuredContent"]["task_id"]
    done = operator.call("task_result", {"task_id": task_id, "wait_s": 20})["structuredContent"]
    assert done["result"]["square"] == 49


def macp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "macp", *args], capture_output=True, text=True, timeout=60,
        env=environment, check=False,
    )  # fmt: skip


def test_macp_gateway_token_prints_a_token_the_gateway_takes(tmp_path: Path) -> None:
    made = macp("gateway", "token", "--role", "viewer", "--subject", "ci", "--ttl-s", "60",
                env={"MACP_GATEWAY_JWT_SECRET": SECRET})  # fmt: skip
    assert made.returncode == 0, made.stderr
    principal = JwtVerifier(KEY).verify(made.stdout.strip())
    assert (principal.name, principal.role.value) == ("ci", "viewer")
    assert principal.claims["exp"] - principal.claims["iat"] == 60
    no_key = macp("gateway", "token", "--role", "viewer", "--subject", "ci",
                  env={"MACP_GATEWAY_JWT_SECRET": ""})  # fmt: skip
    assert (no_key.returncode, no_key.stderr.strip()) == (
        2,
        "error: no key to sign with: give --key-file, or set $MACP_GATEWAY_JWT_SECRET",
    )
    bad_role = macp("gateway", "token", "--role", "root", "--subject", "ci",
                    env={"MACP_GATEWAY_JWT_SECRET": SECRET})  # fmt: skip
    assert bad_role.returncode == 2
    assert bad_role.stderr.strip().startswith("error: --role 'root' is not one of viewer")


def test_macp_gateway_keys_create_list_revoke(tmp_path: Path) -> None:
    db = str(tmp_path / "keys.sqlite3")
    made = macp("gateway", "keys", "create", "--principal", "w1", "--role", "agent",
                "--namespace", "shared", "--keys-db", db, "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    with KeyStore(db) as store:
        principal = store.verify(record["key"])
    assert (principal.name, principal.role.value) == ("w1", "agent")
    assert principal.namespaces == frozenset({"shared"})
    listed = macp("gateway", "keys", "list", "--keys-db", db, "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["revoked_at"]) for r in rows] == [(record["id"], None)]
    assert record["key"] not in listed.stdout
    assert macp("gateway", "keys", "revoke", record["id"], "--keys-db", db).returncode == 0
    listed = macp("gateway", "keys", "list", "--keys-db", db, "--json")
    assert json.loads(listed.stdout)["revoked_at"] is not None
    unknown = macp("gateway", "keys", "revoke", "nope", "--keys-db", db)
    assert (unknown.returncode, unknown.stderr.split(";")[0]) == (
        2,
        "error: no API key has the id 'nope'",
    )


def test_off_loopback_needs_auth_or_insecure(member: Member, keys: KeyStore) -> None:
    with pytest.raises(ConfigError, match=r"^--jsonrpc 0.0.0.0:0 can be reached from other hosts, "
                       r"and no authentication is configured"):  # fmt: skip
        Gateway(member, jsonrpc="0.0.0.0:0")
    served = Gateway(member, jsonrpc="0.0.0.0:0", guard=Guard(Auth(keys=keys)))
    with served:
        port = served.addresses["jsonrpc"].rpartition(":")[2]
        with LineClient(f"127.0.0.1:{port}") as client:
            assert error_of(client.call("task_list"))[0] == UNAUTHORIZED


def test_the_cli_serves_off_loopback_with_a_key_store(cluster_procs: Any, tmp_path: Path) -> None:
    db = tmp_path / "keys.sqlite3"
    KeyStore(db).close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "macp", "gateway", "--connect", cluster_procs.head.address,
         "--jsonrpc", "0.0.0.0:0", "--keys-db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline() or "{}")
        assert ready.get("event") == "gateway.ready", proc.stderr
        assert ready["jsonrpc"].startswith("0.0.0.0:")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


def test_mcp_http_over_tls(member: Member, tmp_path: Path, opened: list[McpHttp]) -> None:
    cert, key = self_signed(tmp_path)
    with pytest.raises(ConfigError, match=r"^--tls-cert needs --tls-key too"):
        Tls.load(cert, None)
    guard = Guard(Auth(jwt=JwtVerifier(KEY)))
    served = Gateway(member, jsonrpc=None, mcp_http="127.0.0.1:0", guard=guard,
                     tls=Tls.load(cert, key))  # fmt: skip
    with served:
        url = served.addresses["mcp_http"]
        assert url.startswith("https://127.0.0.1:")
        session = McpHttp(
            url, token("operator"), verify=ssl.create_default_context(cafile=str(cert))
        )
        opened.append(session)
        session.start()
        assert session.call("ping", {})["structuredContent"]["status"] == "ok"
        session.http.close()  # before the server stops: no TLS connection left to it
