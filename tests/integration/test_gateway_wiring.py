"""What users run, wired: ``macp gateway`` (a process) audits every call in the file ``macp
gateway audit`` reads and limits each principal; ``macp mcp --http`` authenticates, audits and
limits alike; ``macp up`` serves the topology file's ``gateway:`` section with its
authentication."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from jsonrpc_client import LineClient
from procs import QUICK_CLUSTER_FLAGS, TESTS
from topology_procs import ROOT, free_ports

from macp.cli import STOP_WITH_PARENT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration

SECRET = "s" * 40
UNAUTHORIZED = -32006
RATE_LIMITED = -32000


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(TESTS), STOP_WITH_PARENT: str(os.getpid()), **extra}


def macp(*args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "macp", *args], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(**extra),
    )  # fmt: skip


def macp_run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "macp", *args], capture_output=True, text=True, timeout=60,
        env=environment(**extra), check=False,
    )  # fmt: skip


def ready_line(proc: subprocess.Popen[str], timeout_s: float = 30) -> dict[str, Any]:
    """The process's first line of standard output (its ready line), parsed."""
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    if not lines or not lines[0]:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"no ready line; standard error:\n{err}")
    ready: dict[str, Any] = json.loads(lines[0])
    return ready


def token(role: str, subject: str) -> str:
    made = macp_run("gateway", "token", "--role", role, "--subject", subject,
                    MACP_GATEWAY_JWT_SECRET=SECRET)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def audit_records(*args: str) -> list[dict[str, Any]]:
    shown = macp_run("gateway", "audit", "--json", *args)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


@pytest.fixture
def head(procs: Callable[..., NodeProcess], tmp_path: Path) -> str:
    node = procs("head", "--control-plane", "--journal", str(tmp_path / "journal.db"),
                 "--agent", "sq=agents:Squarer", *QUICK_CLUSTER_FLAGS)  # fmt: skip
    assert node.address is not None
    return node.address


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_macp_gateway_audits_every_call_and_limits_each_principal(
    head: str, started: list[subprocess.Popen[str]]
) -> None:
    gateway = macp("gateway", "--connect", head, "--name", "gw", "--jsonrpc", "127.0.0.1:0",
                   "--rate-per-principal", "5", *QUICK_CLUSTER_FLAGS,
                   MACP_GATEWAY_JWT_SECRET=SECRET)  # fmt: skip
    started.append(gateway)
    address = ready_line(gateway)["jsonrpc"]
    outcomes: list[tuple[str, str]] = [("initialize", "ok")]  # the connection proves itself
    with LineClient(address) as viewer:
        viewer.result("initialize", {"auth": {"token": token("viewer", "vic")}})
        assert "tasks" in viewer.result("task_list")
        outcomes.append(("task_list", "ok"))
        refused = viewer.call("task_orchestrate", {"type": "square", "body": {"x": 3}})
        assert refused["error"]["code"] == UNAUTHORIZED
        outcomes.append(("task_orchestrate", "denied"))
        for _ in range(50):  # 5 a second: one of these is over the limit
            answer = viewer.call("task_list")
            if "error" in answer:
                break
            outcomes.append(("task_list", "ok"))
        error = answer["error"]
        assert error["code"] == RATE_LIMITED
        assert error["message"].startswith("vic calls more than 5 operations a second; retry ")
        assert 0 < error["data"]["retry_after_s"] <= 1
        outcomes.append(("task_list", "limited"))
    stop(gateway)  # the audit log is written before the process ends
    records = audit_records("--principal", "vic")  # the default file, as the gateway wrote it
    assert [(r["operation"], r["outcome"]) for r in records] == outcomes
    assert {(r["gateway"], r["role"], r["via"], r["transport"]) for r in records} == {
        ("gw", "viewer", "jwt", "jsonrpc")
    }
    assert [r["code"] for r in records if r["outcome"] != "ok"] == [UNAUTHORIZED, RATE_LIMITED]


def test_macp_gateway_audit_db_and_limits_off(
    head: str, started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    audit_db = tmp_path / "calls.sqlite3"
    gateway = macp("gateway", "--connect", head, "--jsonrpc", "127.0.0.1:0",
                   "--audit-db", str(audit_db), "--rate-per-principal", "0",
                   "--rate-per-connection", "0",
                   *QUICK_CLUSTER_FLAGS)  # fmt: skip
    started.append(gateway)
    address = ready_line(gateway)["jsonrpc"]
    with LineClient(address) as local:
        for _ in range(300):  # more than the default 200 a second: no limit with 0
            assert local.result("ping")["status"] == "ok"
    stop(gateway)
    records = audit_records("--db", str(audit_db))
    assert len(records) == 300
    assert {(r["operation"], r["outcome"], r["transport"]) for r in records} == {
        ("ping", "ok", "jsonrpc")
    }


def test_macp_up_serves_the_gateway_sections_http_with_its_jwt_secret(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (head,) = free_ports(1)
    file = tmp_path / "served.yaml"
    file.write_text(
        textwrap.dedent(f"""\
            name: served
            nodes:
              - {{name: head, listen: "tcp://127.0.0.1:{head}"}}
            agents:
              - {{name: sq, class: "agents:Squarer"}}
            gateway: {{http: "127.0.0.1:0", jwt_secret_env: MY_SECRET, audit_db: calls.sqlite3}}
        """),
        encoding="utf-8",
    )
    checked = subprocess.run([sys.executable, "-m", "macp", "validate", str(file)], env=env,
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    up = subprocess.Popen(
        [sys.executable, "-m", "macp", "up", str(file)], cwd=ROOT, text=True,
        env={**env, "MY_SECRET": SECRET}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert up.stderr is not None
        for line in up.stderr:  # "... is up: ...", once every agent registered
            if " is up: " in line:
                break
        found = re.search(r", gateway http at (http://127\.0\.0\.1:\d+);", line)
        assert found is not None, line
        tasks = f"{found[1]}/api/v1/tasks"
        refused = httpx.get(tasks, timeout=30)
        assert refused.status_code == 401
        bearer = {"Authorization": f"Bearer {token('viewer', 'vic')}"}
        allowed = httpx.get(tasks, headers=bearer, timeout=30)
        assert allowed.status_code == 200, allowed.text
        assert "tasks" in allowed.json()
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
        up.communicate(timeout=10)
    records = audit_records("--db", str(tmp_path / "calls.sqlite3"), "--principal", "vic")
    assert [(r["operation"], r["outcome"], r["transport"]) for r in records] == [
        ("task_list", "ok", "rest")
    ]


def test_macp_up_refuses_a_jwt_secret_env_that_is_not_set(
    tmp_path: Path, env: dict[str, str]
) -> None:
    file = tmp_path / "served.yaml"
    file.write_text(
        textwrap.dedent("""\
            name: served
            nodes:
              - {name: head, listen: "tcp://127.0.0.1:0"}
            gateway: {http: "127.0.0.1:0", jwt_secret_env: NOT_SET_HERE}
        """),
        encoding="utf-8",
    )
    up = subprocess.run([sys.executable, "-m", "macp", "up", str(file)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert up.returncode == 2
    assert (
        "error: gateway.jwt_secret_env names $NOT_SET_HERE, which is not set: set it to the "
        "tokens' secret (32 bytes or more) before macp up"
    ) in up.stderr


def validate(file: Path, text: str, env: dict[str, str]) -> list[str]:
    file.write_text(text, encoding="utf-8")
    checked = subprocess.run([sys.executable, "-m", "macp", "validate", str(file)], env=env,
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 1
    return checked.stderr.splitlines()


NODES = 'name: served\nnodes:\n  - {name: head, listen: "tcp://127.0.0.1:0"}\n'


def test_macp_validate_checks_the_gateway_section(tmp_path: Path, env: dict[str, str]) -> None:
    file = tmp_path / "served.yaml"
    paths = (
        "gateway:\n  jwt_key_file: missing.key\n  jwt_secret_env: MY_SECRET\n  tls_cert: c.pem\n"
    )
    assert validate(file, NODES + paths, env) == [
        (
            f"error: {file}:5: gateway.jwt_key_file: no such file: {tmp_path / 'missing.key'} (a "
            "path here is relative to the topology file)"
        ),
        (
            f"error: {file}:6: gateway.jwt_secret_env: give jwt_key_file or jwt_secret_env, not "
            "both: tokens are checked with one key"
        ),
        (
            f"error: {file}:7: gateway.tls_cert: tls_cert needs tls_key too: HTTPS takes a "
            "certificate and its key"
        ),
        (
            f"error: {file}:7: gateway.tls_cert: no such file: {tmp_path / 'c.pem'} (a path "
            "here is relative to the topology file)"
        ),
    ]
    values = "gateway:\n  jwt_secret_env: s3cr3t-value\n  rate_per_principal: -1\n"
    assert validate(file, NODES + values, env) == [
        (
            f"error: {file}:5: gateway.jwt_secret_env: not an environment variable's name (it is "
            "not shown, in case it is a secret): give the NAME of the variable that holds the "
            "secret, e.g. MY_SECRET"
        ),
        f"error: {file}:6: gateway.rate_per_principal: must be greater than or equal to 0",
    ]


class McpHttp:
    """A raw MCP client over streamable HTTP, with a bearer credential or none."""

    def __init__(self, url: str, credential: str | None) -> None:
        self.url = url
        self.headers = {"Accept": "application/json, text/event-stream"}
        if credential is not None:
            self.headers["Authorization"] = f"Bearer {credential}"

    def post(self, message: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url, json=message, headers=self.headers, timeout=30)

    def start(self) -> httpx.Response:
        answer = self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"}}})  # fmt: skip
        if answer.status_code == 200:
            self.headers["mcp-session-id"] = answer.headers["mcp-session-id"]
            self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                            "params": {"name": name, "arguments": arguments}})  # fmt: skip
        assert answer.status_code == 200, answer.text
        lines = [
            ln.removeprefix("data:") for ln in answer.text.splitlines() if ln.startswith("data:")
        ]
        result: dict[str, Any] = json.loads(lines[-1] if lines else answer.text)["result"]
        return result


def test_macp_mcp_http_authenticates_audits_and_limits_like_the_gateway(
    head: str, started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    audit_db = tmp_path / "mcp.sqlite3"
    served = macp("mcp", "--connect", head, "--http", "127.0.0.1:0", "--audit-db", str(audit_db),
                  "--submissions-per-min", "1", *QUICK_CLUSTER_FLAGS,
                  MACP_GATEWAY_JWT_SECRET=SECRET)  # fmt: skip
    started.append(served)
    url = ready_line(served)["url"]
    assert McpHttp(url, None).start().status_code == 401
    viewer, operator = McpHttp(url, token("viewer", "vic")), McpHttp(url, token("operator", "ops"))
    assert viewer.start().status_code == 200
    assert operator.start().status_code == 200
    denied = viewer.call("task_orchestrate", {"type": "square", "body": {"x": 2}})
    assert denied["isError"] is True
    assert denied["structuredContent"]["code"] == UNAUTHORIZED
    assert (
        operator.call("task_orchestrate", {"type": "square", "body": {"x": 2}})["isError"] is False
    )
    limited = operator.call("task_orchestrate", {"type": "square", "body": {"x": 3}})
    assert limited["structuredContent"]["code"] == RATE_LIMITED
    assert limited["structuredContent"]["data"]["retry_after_s"] > 0
    stop(served)
    records = audit_records("--db", str(audit_db))
    assert [(r["principal"], r["operation"], r["outcome"], r["transport"]) for r in records] == [
        ("vic", "task_orchestrate", "denied", "mcp-http"),
        ("ops", "task_orchestrate", "ok", "mcp-http"),
        ("ops", "task_orchestrate", "limited", "mcp-http"),
    ]


def test_macp_mcp_http_off_loopback_needs_authentication_or_insecure(
    started: list[subprocess.Popen[str]],
) -> None:
    served = macp("mcp", "--connect", "tcp://127.0.0.1:9", "--http", "0.0.0.0:0")
    started.append(served)
    _, err = served.communicate(timeout=30)
    assert served.returncode == 2
    assert err.strip() == (
        "error: --http 0.0.0.0:0 can be reached from other hosts, and no authentication is "
        "configured (--jwt-key-file, $MACP_GATEWAY_JWT_SECRET or --keys-db); configure it, serve "
        "on 127.0.0.1, or add --insecure"
    )


def test_http_limits_each_client_connection_with_429_and_retry_after(
    head: str, started: list[subprocess.Popen[str]]
) -> None:
    gateway = macp("gateway", "--connect", head, "--http", "127.0.0.1:0", "--mcp-http",
                   "127.0.0.1:0", "--rate-per-connection", "3", *QUICK_CLUSTER_FLAGS)  # fmt: skip
    started.append(gateway)
    ready = ready_line(gateway)
    for url in (f"{ready['http']}/api/v1/tasks", ready["mcp_http"]):
        with httpx.Client(timeout=30) as keep_alive:  # one connection: one client IP:port
            statuses = [keep_alive.get(url).status_code for _ in range(20)]
            limited = statuses.index(429)
            assert limited >= 3, statuses
            answer = keep_alive.get(url)
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "1"
        error = answer.json()["error"]
        assert error["code"] == RATE_LIMITED
        assert error["message"].startswith("too many requests on this connection (127.0.0.1:")
        assert 0 < error["data"]["retry_after_s"] <= 1
        with httpx.Client(timeout=30) as another:  # a new connection has a budget of its own
            assert another.get(url).status_code != 429
    stop(gateway)
