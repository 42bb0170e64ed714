"""Every path in a topology file is taken from the file's folder, whatever directory a node
runs from: a head restarted from elsewhere opens the same journal and finds its tasks."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest
from procs import TESTS
from topology_procs import free_ports

import macp
from macp.testing import LogEvents, NodeProcess
from macp.topologies.deploy import journal_path
from macp.topologies.load import load_spec

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

TOPOLOGY = """
name: paths
nodes:
  - {{name: head, listen: "tcp://127.0.0.1:{port}", head: true}}
agents:
  - {{name: echo, class: "agents:Echo"}}
settings: {{journal: {journal}}}
"""


def _head(file: Path, cwd: Path, env: dict[str, str]) -> NodeProcess:
    """``macp node start --config FILE --node head`` run from ``cwd``."""
    config = os.path.relpath(file, cwd)
    return NodeProcess("head", config=config, environ=env, cwd=cwd).start(30)


def _stop(head: NodeProcess) -> LogEvents:
    """Stop it; its log records."""
    head.terminate()
    return head.logs()


@pytest.fixture
def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "MACP_DATA_DIR"}
    clean["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    return clean


def _topology(tmp_path: Path, journal: str) -> tuple[Path, str]:
    project = tmp_path / "project"
    project.mkdir()
    (port,) = free_ports(1)
    file = project / "topology.yaml"
    file.write_text(TOPOLOGY.format(port=port, journal=journal), encoding="utf-8")
    return file, f"tcp://127.0.0.1:{port}"


def _replayed(records: LogEvents) -> dict[str, Any]:
    return records.one("coordinator.replayed")


def test_a_head_restarted_from_another_directory_opens_the_same_journal(
    tmp_path: Path, env: dict[str, str]
) -> None:
    file, address = _topology(tmp_path, "data/journal.sqlite3")
    first_cwd, second_cwd = tmp_path / "one", tmp_path / "two"
    first_cwd.mkdir()
    second_cwd.mkdir()
    head = _head(file, first_cwd, env)
    try:
        with macp.connect(address) as cluster:
            cluster.wait_for_agents(["echo@head"])
            task = cluster.submit("echo", "kept")
            assert task.result()["echo"] == "kept"
    finally:
        first = _stop(head)
    expected = tmp_path / "project" / "data" / "journal.sqlite3"
    assert expected.is_file()
    assert not (first_cwd / "data").exists()
    assert _replayed(first)["journal"] == str(expected)
    assert _replayed(first)["stored"] == 0

    head = _head(file, second_cwd, env)
    try:
        with macp.connect(address) as cluster:
            assert cluster.result(task.id)["echo"] == "kept"
    finally:
        second = _stop(head)
    assert (_replayed(second)["journal"], _replayed(second)["stored"]) == (str(expected), 1)
    assert not (second_cwd / "data").exists()


def test_the_default_journal_is_beside_the_topology_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MACP_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    file, _ = _topology(tmp_path, "null")
    spec = load_spec(os.path.relpath(file, tmp_path))
    assert journal_path(spec) == tmp_path / "project" / ".macp" / "paths" / "journal.sqlite3"
    monkeypatch.setenv("MACP_DATA_DIR", "elsewhere")
    assert journal_path(spec) == tmp_path / "elsewhere" / "paths" / "journal.sqlite3"


def test_an_absolute_journal_path_is_kept_as_it_is(tmp_path: Path) -> None:
    file, _ = _topology(tmp_path, str(tmp_path / "abs" / "j.sqlite3"))
    assert journal_path(load_spec(file)) == tmp_path / "abs" / "j.sqlite3"
