"""``macp gateway`` as a process: it joins a cluster of node processes, prints its ready line,
serves a session as ``nc`` sends it, stops cleanly on SIGTERM, and refuses bad listeners with
one sentence."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import pytest
from procs import QUICK_CLUSTER_FLAGS, TESTS
from topology_procs import ROOT, TopologyNodes, free_ports, node_processes

from macp.cli import STOP_WITH_PARENT
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration


def macp(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(TESTS), STOP_WITH_PARENT: str(os.getpid())}
    return subprocess.Popen(
        [sys.executable, "-m", "macp", *args], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
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


def nc(address: str, text: str) -> list[Any]:
    """What ``printf TEXT | nc -q1 HOST PORT`` prints, parsed: send it all, close the sending
    side, read every line until the server closes."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(text.encode())
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return [json.loads(line) for line in received.splitlines()]


def test_macp_gateway_serves_an_nc_session_and_stops_on_sigterm(
    head: str, started: list[subprocess.Popen[str]]
) -> None:
    proc = macp("gateway", "--connect", head, "--name", "gw", "--jsonrpc", "127.0.0.1:0",
                "--mcp-http", "127.0.0.1:0", "--log-json", *QUICK_CLUSTER_FLAGS)  # fmt: skip
    started.append(proc)
    ready = ready_line(proc)
    assert ready["event"] == "gateway.ready"
    assert ready["name"] == "gw"
    assert ready["head"] == "head"
    assert ready["mcp_http"].startswith("http://127.0.0.1:")
    assert ready["mcp_http"].endswith("/mcp")
    assert ready["jsonrpc"].startswith("127.0.0.1:")
    assert not ready["jsonrpc"].endswith(":0")
    # the README's session, as printf would write it
    answers = nc(ready["jsonrpc"], '{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
                 '{"jsonrpc":"2.0","id":2,"method":"task_orchestrate",'
                 '"params":{"type":"square","body":{"x":12}}}\n')  # fmt: skip
    by_id = {a["id"]: a for a in answers}
    assert by_id[1]["result"]["status"] == "ok"
    task_id = by_id[2]["result"]["task_id"]
    (done,) = nc(ready["jsonrpc"], json.dumps({"jsonrpc": "2.0", "id": 3, "method": "task_result",
                 "params": {"task_id": task_id, "wait_s": 15}}) + "\n")  # fmt: skip
    assert done["result"]["result"] == {"square": 144, "by": "sq@head"}
    # the same process serves MCP over HTTP
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}}  # fmt: skip
    answer = httpx.post(ready["mcp_http"], json=initialize, timeout=30,
                        headers={"Accept": "application/json, text/event-stream"})  # fmt: skip
    assert answer.status_code == 200
    assert '"serverInfo"' in answer.text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


@pytest.mark.parametrize("flag", ["--jsonrpc", "--mcp-http", "--http"])
def test_a_listener_off_loopback_is_refused_without_insecure(
    flag: str, started: list[subprocess.Popen[str]]
) -> None:
    proc = macp("gateway", "--connect", "tcp://127.0.0.1:9", flag, "0.0.0.0:9500")
    started.append(proc)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip() == (
        f"error: {flag} 0.0.0.0:9500 can be reached from other hosts, and no authentication is "
        "configured (--jwt-key-file, $MACP_GATEWAY_JWT_SECRET or --keys-db); configure it, serve "
        "on 127.0.0.1, or add --insecure"
    )


def test_a_listener_address_not_host_port_is_refused(started: list[subprocess.Popen[str]]) -> None:
    proc = macp("gateway", "--connect", "tcp://127.0.0.1:9", "--jsonrpc", "9500")
    started.append(proc)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "error: --jsonrpc '9500' must be HOST:PORT, e.g. --jsonrpc 127.0.0.1:9500" in err


def test_a_jsonrpc_port_in_use_is_one_sentence_and_exit_2(
    head: str, started: list[subprocess.Popen[str]]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = macp("gateway", "--connect", head, "--jsonrpc", f"127.0.0.1:{port}",
                    *QUICK_CLUSTER_FLAGS)  # fmt: skip
        started.append(proc)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().endswith(
        f"error: JSON-RPC address already in use: 127.0.0.1:{port}; choose another port or "
        "stop what listens there"
    )


def test_macp_up_starts_the_gateway_of_the_files_gateway_section_and_stops_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    head, jsonrpc = free_ports(2)
    file = tmp_path / "served.yaml"
    file.write_text(
        textwrap.dedent(f"""\
            name: served
            nodes:
              - {{name: head, listen: "tcp://127.0.0.1:{head}"}}
            agents:
              - {{name: sq, class: "agents:Squarer"}}
            gateway: {{jsonrpc: "127.0.0.1:{jsonrpc}"}}
        """),
        encoding="utf-8",
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "macp", "up", str(file)], cwd=ROOT, env=env, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert up.stderr is not None
        for line in up.stderr:  # "... is up: ...", once every agent registered
            if " is up: " in line:
                break
        address = f"127.0.0.1:{jsonrpc}"
        assert (
            f"is up: 1 nodes, head at tcp://127.0.0.1:{head}, gateway jsonrpc at {address}; "
            "Ctrl-C stops it"
        ) in line
        assert len(node_processes(env["MACP_DATA_DIR"])) == 1
        assert len(gateway_processes(env["MACP_DATA_DIR"])) == 1
        submit = {"type": "square", "body": {"x": 4}}
        (submitted,) = nc(address, request(1, "task_orchestrate", submit))
        wait = {"task_id": submitted["result"]["task_id"], "wait_s": 15}
        (done,) = nc(address, request(2, "task_result", wait))
        assert done["result"]["result"] == {"square": 16, "by": "sq@head"}
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
        up.communicate(timeout=10)
    data_dir = env["MACP_DATA_DIR"]
    wait_until(
        lambda: not node_processes(data_dir) and not gateway_processes(data_dir),
        10,
        "a process outlived its macp up",
    )


def request(request_id: int, method: str, params: dict[str, Any]) -> str:
    return (
        json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}) + "\n"
    )


def gateway_processes(data_dir: str) -> list[psutil.Process]:
    """The `macp gateway` processes started for a test (they inherit its MACP_DATA_DIR)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if " macp gateway " not in f" {' '.join(proc.info['cmdline'] or [])} ":
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            if proc.environ().get("MACP_DATA_DIR") == data_dir:
                found.append(proc)
    return found


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.partition(f"\n## {title}\n")[2].partition("\n## ")[0]


def test_the_readme_nc_session_runs_as_written(env: dict[str, str]) -> None:
    """The README's JSON-RPC session (its ``nc`` lines sent as ``nc -q1`` sends them, since
    ``nc`` may be missing here), on a free port instead of 9500, against the peers example."""
    section = readme_section("JSON-RPC over TCP: macp for any language")
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    python = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    assert python is not None
    serve, *sessions = [shlex.split(line, comments=True) for line in block[1].splitlines()]
    assert serve == ["macp", "gateway", "--connect", "tcp://127.0.0.1:PORT", "&"]
    (port,) = free_ports(1)
    agents = {"analyst@alpha", "factorer-1@beta", "factorer-2@beta", "statistician@beta"}
    nodes = TopologyNodes("examples/peers/topology.yaml", ["alpha", "beta"], env)
    gateway: subprocess.Popen[str] | None = None
    try:
        nodes.start(agents)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "macp", "gateway", "--connect", nodes.head,
             "--jsonrpc", f"127.0.0.1:{port}", "--heartbeat-s", "0.5"], cwd=ROOT, env=env,
            text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        ready_line(gateway)
        answers: list[Any] = []
        for args in sessions:
            bar = args.index("|")
            assert args[:2] == ["printf", "%s\\n"]
            assert args[bar + 1 :] == ["nc", "-q1", "127.0.0.1", "9500"]
            lines = [
                line.replace("TASK_ID", answers[-1]["result"]["task_id"] if answers else "")
                for line in args[2:bar]
            ]
            answers += nc(f"127.0.0.1:{port}", "".join(f"{line}\n" for line in lines))
        code = python[1].replace("9500", str(port))
        said = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.communicate(timeout=20)
        nodes.stop()
    by_id = {a["id"]: a for a in answers}
    assert by_id[1]["result"]["status"] == "ok"
    assert by_id[2]["result"]["task_id"]
    assert by_id[3]["result"]["done"] is True
    assert by_id[3]["result"]["result"] == [2, 2, 2, 3, 3, 5]
    assert (said.returncode, said.stdout) == (0, "ok\n"), said.stderr
