"""What users run, wired: ``macp gateway`` (a process) audits every call in the file ``macp
gateway audit`` reads and limits each principal; ``macp mcp --http`` authenticates, audits and
limits alike; ``macp up`` serves the topology file's ``gateway:`` section with its
authentication."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest
from jsonrpc_client import LineClient
from procs import QUICK_CLUSTER_FLAGS, TESTS

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
    outcomes: list[tuple[str, str]] = []
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
