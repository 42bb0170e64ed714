"""Endpoints: a port is a number from 0 (listen addresses only: any free port) to 65535, and an
address out of that range is refused naming its field, by ``Node``, the topology file and
``macp validate``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from macp import ConfigError, Node
from macp.topologies.load import parse_spec
from macp.transport.security import check_endpoint

TESTS = Path(__file__).resolve().parents[1]  # tests/agents.py: the file's agent class

FILE = """\
name: t
nodes:
  - name: head
    listen: tcp://127.0.0.1:99999
    head: true
agents:
  - name: echo
    class: agents:Echo
"""


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:0", "tcp://h:65535", "tcp://*:*"])
def test_ports_from_0_to_65535_are_listen_addresses(address: str) -> None:
    assert check_endpoint(address, "listen address", bind=True) == address


@pytest.mark.parametrize("port", ["65536", "99999", "100000000000000000000"])
def test_a_listen_port_beyond_65535_is_refused_naming_the_field(port: str) -> None:
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConfigError, match=exactly(
        f"listen address {address!r} is invalid; use tcp://HOST:PORT (PORT 0-65535; 0 picks a "
        "free one)"
    )):  # fmt: skip
        check_endpoint(address, "listen address", bind=True)


@pytest.mark.parametrize("port", ["0", "*", "70000"])
def test_a_peer_port_must_be_from_1_to_65535(port: str) -> None:
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConfigError, match=exactly(
        f"peer 'b' address {address!r} is invalid; use tcp://HOST:PORT (PORT 1-65535)"
    )):  # fmt: skip
        check_endpoint(address, "peer 'b' address")


def test_a_node_refuses_a_port_out_of_range_before_it_starts() -> None:
    with pytest.raises(ConfigError, match=r"^listen address 'tcp://127.0.0.1:99999' is invalid"):
        Node("n", listen="tcp://127.0.0.1:99999")
    with pytest.raises(ConfigError, match=r"^peer 'b' address 'tcp://127.0.0.1:65536' is invalid"):
        Node("n", listen="tcp://127.0.0.1:0", peers={"b": "tcp://127.0.0.1:65536"})
    with pytest.raises(ConfigError, match=r"^join address 'tcp://127.0.0.1:0' is invalid"):
        Node("n", listen="tcp://127.0.0.1:0", join="tcp://127.0.0.1:0")


def test_a_topology_file_with_a_port_out_of_range_names_the_line_and_field() -> None:
    with pytest.raises(ConfigError, match=exactly(
        "topo.yaml:4: nodes[0].listen: listen address 'tcp://127.0.0.1:99999' is invalid; use "
        "tcp://HOST:PORT (PORT 0-65535; 0 picks a free one)"
    )):  # fmt: skip
        parse_spec(FILE, "topo.yaml")


def test_validate_and_node_start_refuse_a_port_out_of_range(tmp_path: Path) -> None:
    path = tmp_path / "topo.yaml"
    path.write_text(FILE)

    def macp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "macp", *args],
            capture_output=True, text=True, timeout=20, check=False,
            env={**os.environ, "PYTHONPATH": str(TESTS)},
        )  # fmt: skip

    done = macp("validate", str(path))
    assert done.returncode == 1
    assert f"{path}:4: nodes[0].listen: listen address 'tcp://127.0.0.1:99999' is invalid" in (
        done.stdout + done.stderr
    )
    done = macp("node", "start", "--name", "n", "--listen", "tcp://127.0.0.1:99999")
    assert (done.returncode, done.stderr.strip()) == (
        2,
        (
            "error: listen address 'tcp://127.0.0.1:99999' is invalid; use tcp://HOST:PORT "
            "(PORT 0-65535; 0 picks a free one)"
        ),
    )
