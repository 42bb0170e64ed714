"""The `macp` commands against a running topology (the peers example, as node processes):
status as JSON and as tables, control pause/resume, and the errors of bad input."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest
from topology_procs import (
    ROOT,
    TopologyNodes,
    expected_analysis,
    free_ports,
    macp_cli,
    node_processes,
    unlogged,
)

import macp
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

PEERS = "examples/peers/topology.yaml"
PEERS_AGENTS = {"analyst@alpha", "factorer-1@beta", "factorer-2@beta", "statistician@beta"}
CONTROL_PLANE = {
    "coordinator@alpha", "evaluations@alpha", "memory@alpha", "monitor@alpha", "projects@alpha",
    "registry@alpha", "resources@alpha", "sessions@alpha",
}  # fmt: skip


# -- processes ------------------------------------------------------------------------------------


@pytest.fixture
def peers(env: dict[str, str]) -> Iterator[TopologyNodes]:
    """The peers example running as two node processes, alpha (the head) and beta."""
    nodes = TopologyNodes(PEERS, ["alpha", "beta"], env)
    try:
        yield nodes.start(PEERS_AGENTS)
    finally:
        nodes.stop()


@pytest.fixture
def background(env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a `macp` command without waiting for it; if the test leaves it running, it is
    killed, with the node processes it started (they hold its pipes open)."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        started.append(subprocess.Popen(
            [sys.executable, "-m", "macp", *args], cwd=ROOT, env=env, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))  # fmt: skip
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            for node in node_processes(env["MACP_DATA_DIR"]):
                node.kill()
        proc.communicate(timeout=10)


def cli(nodes: TopologyNodes, *args: str) -> subprocess.CompletedProcess[str]:
    """A `macp` command given the head's address with --connect."""
    return macp_cli(*args, "--connect", nodes.head, env=nodes.env)


def status(nodes: TopologyNodes) -> dict[str, Any]:
    done = cli(nodes, "status", "--json")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def agent_figures(report: dict[str, Any]) -> dict[str, tuple[str, int, int, int]]:
    """Each user agent's status, load, tasks done and tasks failed."""
    return {
        a["address"]: (a["status"], a["load"], a["done"], a["failed"])
        for a in report["agents"]
        if a["address"] in PEERS_AGENTS
    }


def statuses(report: dict[str, Any]) -> set[str]:
    """The statuses of the user agents (the registry hears of a change at the next heartbeat)."""
    return {status for status, _, _, _ in agent_figures(report).values()}


def wait_for_status(
    nodes: TopologyNodes, ready: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """`macp status --json` until ``ready(report)`` (the monitor samples once a second)."""
    latest: list[dict[str, Any]] = []

    def check() -> bool:
        latest[:] = [status(nodes)]
        return ready(latest[0])

    wait_until(check, 20, what)
    return latest[0]


def registry_statuses(cluster: macp.Cluster) -> dict[str, str]:
    return {r["address"]: r["status"] for r in cluster.agents() if r["address"] in PEERS_AGENTS}


def control(nodes: TopologyNodes, command: str, state: str) -> None:
    """`macp control COMMAND all`, which answers ``state`` for every agent; then wait until the
    registry (and so the coordinator's routing) shows it, at each node's next heartbeat."""
    done = cli(nodes, "control", command, "all")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert json.loads(done.stdout) == {
        agent: {"ok": True, "result": {"state": state}} for agent in PEERS_AGENTS
    }
    status = {"paused": "paused", "running": "available"}[state]
    with macp.connect(nodes.head) as cluster:
        wait_until(
            lambda: set(registry_statuses(cluster).values()) == {status},
            10,
            f"the registry does not show every agent {status}",
        )


# -- status ---------------------------------------------------------------------------------------


def test_status_as_json_lists_nodes_agents_tasks_in_flight_and_workflows(
    peers: TopologyNodes, background: Callable[..., subprocess.Popen[str]]
) -> None:
    done = cli(peers, "run", PEERS, "--task", '{"numbers": [12, 13]}')
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == expected_analysis([12, 13])
    failed = cli(peers, "run", PEERS, "--task", '{"numbers": ["x"]}')
    assert failed.returncode == 1
    assert re.fullmatch(
        r"error: PoisonMessage: task \w+ \(analyze\) failed 2 times; last: AgentError: "
        r"ValueError: invalid literal for int\(\) with base 10: 'x'\n",
        failed.stderr,
    ), failed.stderr
    control(peers, "pause", "paused")
    summary = background("run", PEERS, "--workflow", "summary", "--input",
                         '{"numbers": [4, 9], "n": 360}', "--connect", peers.head)  # fmt: skip

    report = wait_for_status(
        peers,
        lambda r: (
            len(r["tasks"]) == 2
            and statuses(r) == {"paused"}
            and agent_figures(r)["analyst@alpha"][2:] == (1, 1)
            and sum(done for _, _, done, _ in agent_figures(r).values()) == 4
        ),
        "the agents are not shown paused, the workflow's first two steps pending, and the "
        "analyst's two tasks and the three it had help with counted",
    )
    assert [(n["name"], n["state"], n["address"]) for n in report["nodes"]] == [
        ("alpha", "up", peers.addresses["alpha"]),
        ("beta", "up", peers.addresses["beta"]),
    ]
    assert all(n["uptime_s"] > 0 for n in report["nodes"])
    figures = agent_figures(report)  # the analyst's help: tasks of the coordinator
    assert (figures["analyst@alpha"], figures["statistician@beta"]) == (
        ("paused", 0, 1, 1),
        ("paused", 0, 1, 0),
    )
    assert figures["factorer-1@beta"][2] + figures["factorer-2@beta"][2] == 2
    control_plane = {a["address"]: a for a in report["agents"] if a["address"] not in PEERS_AGENTS}
    assert set(control_plane) == CONTROL_PLANE
    assert {a["group"] for a in control_plane.values()} == {"control-plane"}
    tasks = sorted((t["type"], t["state"], t["attempts"], t["agent"]) for t in report["tasks"])
    assert tasks == [("factoring", "pending", 0, None), ("statistics", "pending", 0, None)]
    assert [(w["workflow"], w["state"]) for w in report["workflows"]] == [("summary", "running")]
    assert report["workflow_definitions"] == ["summary"]

    control(peers, "resume", "running")
    out, err = summary.communicate(timeout=30)
    assert (summary.returncode, err) == (0, "")
    assert json.loads(out) == {"combine": {"largest_factor": 5, "mean": 6.5}}
    report = wait_for_status(
        peers,
        lambda r: (
            statuses(r) == {"available"}
            and sum(done for _, _, done, _ in agent_figures(r).values()) == 7
        ),
        "the agents are not shown available again with the workflow's three steps counted",
    )
    figures = agent_figures(report)
    assert (figures["analyst@alpha"], figures["statistician@beta"]) == (
        ("available", 0, 2, 1),
        ("available", 0, 2, 0),
    )
    assert figures["factorer-1@beta"][2] + figures["factorer-2@beta"][2] == 3
    assert (report["tasks"], report["workflows"]) == ([], [])


def test_status_without_json_prints_a_table_per_section(
    peers: TopologyNodes, env: dict[str, str]
) -> None:
    assert cli(peers, "run", PEERS, "--task", '{"numbers": [12, 13]}').returncode == 0
    wait_for_status(
        peers,
        lambda r: (
            agent_figures(r)["analyst@alpha"] == ("available", 0, 1, 0)
            and agent_figures(r)["statistician@beta"][2] == 1
        ),
        "the analyst's task and the statistician's help are not counted",
    )
    alpha, beta = peers.addresses["alpha"], peers.addresses["beta"]
    port = alpha.rpartition(":")[2]
    by_address = cli(peers, "status")
    by_file = macp_cli("status", PEERS, env={**env, "PEERS_ALPHA_PORT": port})
    for done in (by_address, by_file):
        assert (done.returncode, done.stderr) == (0, "")
        for title in ("nodes (2)", "agents (12)", "tasks (0)", "workflows (0)"):
            assert f"\n{title}" in f"\n{done.stdout}", title
        for row in (
            rf"alpha\W+up\W+{re.escape(alpha)}\W+\d+\.\d+",
            rf"beta\W+up\W+{re.escape(beta)}\W+\d+\.\d+",
            r"analyst@alpha\W+available\W+0\W+1\W+0\W+peer\W",
            r"statistician@beta\W+available\W+0\W+1\W+0\W+peer\W",
            r"coordinator@alpha\W+(available|busy)\W+\d+\W+0\W+0\W+control-plane\W",
        ):
            assert re.search(row, done.stdout), row


def test_status_of_a_file_whose_head_listens_on_port_0_asks_for_an_address(
    env: dict[str, str],
) -> None:
    done = macp_cli("status", PEERS, env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: the head's address in {PEERS} has port 0 (chosen by `macp up`); "
        "pass --connect ADDRESS\n"
    )


# -- control --------------------------------------------------------------------------------------


def test_a_task_submitted_while_paused_completes_only_after_resume(peers: TopologyNodes) -> None:
    control(peers, "pause", "paused")
    refused = cli(peers, "run", PEERS, "--task", '{"numbers": [6, 7]}', "--timeout-s", "1")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert re.fullmatch(
        r"error: ResourceUnavailable: task \w+ waited 1 s: no agent that handles 'analyze' is "
        r"available \(1 is paused\)\n",
        refused.stderr,
    ), refused.stderr

    with macp.connect(peers.head) as cluster:
        # retries: the analyst may run it before the registry shows its helpers resumed
        task = cluster.submit("analyze", {"numbers": [6, 7]}, timeout_s=60, max_retries=5)
        wait_until(lambda: task.status().get("wait_reason"), 10, "the task has no wait reason")
        waiting = task.status()
        assert (waiting["state"], waiting["attempts"], waiting["wait_reason"]) == (
            "pending",
            0,
            "no agent that handles 'analyze' is available (1 is paused)",
        )
        with pytest.raises(
            macp.AskTimeout,
            match=r"^no reply from coordinator@alpha to 'coordinator\.result' within 1 s$",
        ):
            task.result(timeout_s=1)
        assert task.status()["state"] == "pending"
        control(peers, "resume", "running")
        assert task.result(timeout_s=30) == expected_analysis([6, 7])
        assert task.status()["state"] == "succeeded"


def test_control_of_an_unknown_target_exits_1_naming_it(peers: TopologyNodes) -> None:
    unknown_target = cli(peers, "control", "pause", "nobody")
    assert (unknown_target.returncode, unknown_target.stdout) == (1, "")
    assert unknown_target.stderr == (
        "error: InvalidParams: no registered agent matches target 'nobody'\n"
    )
    assert statuses(status(peers)) == {"available"}


def test_control_of_an_unknown_command_exits_2_at_once_without_connecting(
    env: dict[str, str],
) -> None:
    (port,) = free_ports(1)  # nothing listens there: a connection would wait out its timeout
    started = time.monotonic()
    unknown = macp_cli("control", "freeze", "all", "--connect", f"tcp://127.0.0.1:{port}", env=env)
    took_s = time.monotonic() - started
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == (
        "error: unknown control command 'freeze'; use one of: start, stop, pause, resume, "
        "configure, status, reset, restart\n"
    )
    assert took_s < 5.0  # the connection's timeout is 10 s


def test_the_registry_shows_a_pause_and_a_resume_as_soon_as_the_command_answers(
    peers: TopologyNodes,
) -> None:
    with macp.connect(peers.head) as cluster:
        cluster.control("pause", "all")
        after_pause = registry_statuses(cluster)
        wait_until(lambda: set(registry_statuses(cluster).values()) == {"paused"}, 10)
        cluster.control("resume", "all")
        after_resume = registry_statuses(cluster)
    assert (after_pause, after_resume) == (
        dict.fromkeys(PEERS_AGENTS, "paused"),
        dict.fromkeys(PEERS_AGENTS, "available"),
    )


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["up", "run"])
def test_a_task_that_is_not_json_exits_2_saying_where_it_breaks(
    command: str, env: dict[str, str]
) -> None:
    done = macp_cli(command, PEERS, "--task", '{"numbers": [1, 2}', env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: --task is not valid JSON: Expecting ',' delimiter at line 1 column 18\n"
    )
    assert node_processes(env["MACP_DATA_DIR"]) == []


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["run", PEERS, "--workflow", "summary", "--input", "{1}"], "--input"),
        (["control", "configure", "all", "--params", "{1}"], "--params"),
    ],
)
def test_bad_json_is_refused_before_connecting_to_anything(
    args: list[str], flag: str, env: dict[str, str]
) -> None:
    (port,) = free_ports(1)  # nothing listens: waiting for it would take 10 s
    done = macp_cli(*args, "--connect", f"tcp://127.0.0.1:{port}", env=env, timeout_s=5)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: {flag} is not valid JSON: Expecting property name enclosed in double quotes "
        "at line 1 column 2\n"
    )


def test_up_of_a_file_with_errors_exits_1_printing_each_error(
    tmp_path: Path, env: dict[str, str]
) -> None:
    bad = tmp_path / "topology.yaml"
    bad.write_text(
        textwrap.dedent("""\
            name: broken
            nodes:
              - name: head
                listen: tcp://127.0.0.1:0
            agents:
              - {name: analyst, class: "examples.peers.agents:Analyst", node: gamma}
              - {name: factorer, class: "examples.peers.agents:Factorer"}
            topology:
              kind: peer-to-peer
              peers: [analyst, factorer]
              entry: analyse
        """),
        encoding="utf-8",
    )
    done = macp_cli("up", str(bad), "--task", '{"numbers": [2]}', env=env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: {bad}:6: agents[0].node: agent 'analyst' is placed on node 'gamma', which is "
        "not declared; use one of: head\n"
        f"error: {bad}:11: topology.entry: no peer handles 'analyse'; name a type a peer handles\n"
    )
    assert node_processes(env["MACP_DATA_DIR"]) == []


def test_run_against_an_address_where_nothing_listens_exits_1_saying_so(
    env: dict[str, str],
) -> None:
    nowhere = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    done = macp_cli("run", PEERS, "--task", '{"numbers": [2]}', "--connect", nowhere, env=env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"error: no answer from {nowhere} within 10 s; is a node running there?\n"


def test_up_of_a_task_that_fails_exits_1_and_stops_every_node(env: dict[str, str]) -> None:
    task = '{"corpus": "/nonexistent"}'
    done = macp_cli("up", "examples/wordcount/topology.yaml", "--task", task, env=env)
    assert (done.returncode, done.stdout) == (1, "")
    errors = unlogged(done.stderr)
    assert len(errors) == 1, done.stderr
    assert re.fullmatch(
        r"error: PoisonMessage: task \w+ \(topology\.submit\) failed 2 times; last: AgentError: "
        r"ValueError: no \.txt files in '/nonexistent'",
        errors[0],
    ), done.stderr
    assert node_processes(env["MACP_DATA_DIR"]) == []


def test_up_stops_its_nodes_when_interrupted_while_its_task_runs(
    tmp_path: Path, env: dict[str, str], background: Callable[..., subprocess.Popen[str]]
) -> None:
    head = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    file = tmp_path / "hang.yaml"
    file.write_text(
        textwrap.dedent(f"""\
            name: hang
            nodes:
              - {{name: head, listen: "{head}"}}
            agents:
              - {{name: a, class: "agents:Echo"}}
              - {{name: b, class: "agents:Echo"}}
            topology: {{kind: peer-to-peer, peers: [a, b], entry: hang}}
            settings: {{shutdown_timeout_s: 0.5}}
        """),
        encoding="utf-8",
    )
    up = background("up", str(file), "--task", "{}")
    with macp.connect(head) as cluster:
        running = [{"type": "hang", "state": "running"}]
        wait_until(
            lambda: [{k: t[k] for k in ("type", "state")} for t in cluster.tasks()] == running,
            30,
            "the task is not running",
        )
    up.send_signal(signal.SIGINT)
    assert up.wait(15) == 130  # well before the task's 300 s
    assert node_processes(env["MACP_DATA_DIR"]) == []


def test_the_nodes_of_an_up_killed_with_sigkill_stop_by_themselves(
    env: dict[str, str], background: Callable[..., subprocess.Popen[str]]
) -> None:
    up = background("up", PEERS)
    assert up.stderr is not None
    for line in up.stderr:  # "... is up: 2 nodes ...", once every agent registered
        if " is up: " in line:
            break
    assert " is up: 2 nodes" in line
    assert len(node_processes(env["MACP_DATA_DIR"])) == 2
    up.kill()  # no clean-up of its own: its nodes see their parent gone
    up.wait(10)
    wait_until(
        lambda: node_processes(env["MACP_DATA_DIR"]) == [], 10, "a node outlived its macp up"
    )


def test_run_waits_for_the_cluster_no_longer_than_its_timeout(env: dict[str, str]) -> None:
    nowhere = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    done = macp_cli("run", PEERS, "--task", "{}", "--connect", nowhere, "--timeout-s", "1", env=env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"error: no answer from {nowhere} within 1 s; is a node running there?\n"


def test_a_malformed_connect_address_exits_2_without_advice_for_listening(
    env: dict[str, str],
) -> None:
    done = macp_cli("status", "--connect", "127.0.0.1:5555", env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: connect address '127.0.0.1:5555' is invalid; use tcp://HOST:PORT\n"
    )


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--listen", "tcp://127.0.0.1:0"], "--listen"),
        (["--agent", "a=agents:Echo", "--control-plane"], "--agent, --control-plane"),
        (["--name", "alpha", "--node", "alpha"], "--name and --node together"),
        (
            ["--heartbeat-s", "0.5", "--max-message-bytes", "1000"],
            "--heartbeat-s, --max-message-bytes",
        ),
        # given, even with the default's value: the file decides, and the flag would be ignored
        (
            ["--heartbeat-s", "1.0", "--prometheus-addr", "127.0.0.1"],
            "--heartbeat-s, --prometheus-addr",
        ),
    ],
)
def test_node_start_with_a_file_refuses_flags_the_file_decides(
    flags: list[str], named: str, env: dict[str, str]
) -> None:
    done = macp_cli("node", "start", "--config", PEERS, *flags, env=env)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: --config takes these from the file, so drop {named}; or leave out --config\n"
    )
    assert node_processes(env["MACP_DATA_DIR"]) == []


def test_a_script_that_configures_no_logging_sees_only_warnings_on_standard_error(
    env: dict[str, str],
) -> None:
    script = textwrap.dedent("""\
        import logging, structlog, macp
        node = macp.Node("solo").start()  # logs node.started at info: not shown
        macp.log.get_logger("macp.node").warning("disk.full", node="solo")
        node.stop()
        assert not structlog.is_configured() and not logging.getLogger().handlers
        print("only this")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "only this\n"), done.stderr
    assert re.fullmatch(r"\S+ \S+ \[warning\s*\] disk\.full\s+node=solo\n", done.stderr)


def test_node_start_with_an_agent_that_cannot_start_exits_2_naming_it(
    env: dict[str, str],
) -> None:
    done = macp_cli("node", "start", "--name", "n1", "--listen", "tcp://127.0.0.1:0",
                    "--agent", "ok=agents:Echo", "--agent", "broken=agents:Unloadable",
                    "--log-json", env=env)  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")  # never ready
    assert unlogged(done.stderr) == [
        "error: child 'broken' failed to start: RuntimeError: cannot load its model"
    ]
    assert node_processes(env["MACP_DATA_DIR"]) == []


# -- no traceback, ever ---------------------------------------------------------------------------


def test_status_through_a_worker_while_the_head_is_down_says_so_in_one_sentence(
    peers: TopologyNodes,
) -> None:
    peers.procs["alpha"].kill()  # and reaped
    beta = peers.addresses["beta"]
    client = macp.Node.client(beta).start()
    try:
        wait_until(
            lambda: client.ask_node("*", "node.info").get()["peers"]["alpha"]["state"] == "down",
            20,
            "beta does not see alpha down",
        )
    finally:
        client.stop()
    for command in (["status"], ["control", "pause", "all"]):
        done = macp_cli(*command, "--connect", beta, env=peers.env)
        assert (done.returncode, done.stdout) == (1, ""), command
        assert done.stderr == (
            "error: the head node 'alpha' is down, and with it the control plane; start it "
            "again, then retry\n"
        ), command


def test_connecting_with_keys_to_an_address_that_names_no_node_says_what_to_write(
    env: dict[str, str], tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    assert macp_cli("keys", "generate", str(keys), "--name", "client", env=env).returncode == 0
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    done = macp_cli("status", "--connect", address, env={**env, "MACP_KEYS": str(keys)})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: connect address {address!r}: with keys, name the node (NAME={address}) so its "
        f"key is known: NAME.key in {keys} must be that node's public key\n"
    )


def test_a_node_that_refuses_the_clients_key_is_named_as_a_possible_cause(
    env: dict[str, str], tmp_path: Path
) -> None:
    node_keys, client_keys = tmp_path / "node", tmp_path / "client"
    for directory, name in ((node_keys, "n1"), (node_keys, "client"), (client_keys, "client")):
        assert macp_cli("keys", "generate", str(directory), "--name", name, env=env).returncode == 0
    (client_keys / "n1.key").write_bytes((node_keys / "n1.key").read_bytes())
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    node = subprocess.Popen(
        [sys.executable, "-m", "macp", "node", "start", "--name", "n1", "--listen", address,
         "--keys", str(node_keys), "--control-plane", "--log-level", "error"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        assert '"node.ready"' in node.stdout.readline()
        done = macp_cli("status", "--connect", f"n1={address}",
                        env={**env, "MACP_KEYS": str(client_keys)})  # fmt: skip
    finally:
        node.terminate()
        node.communicate(timeout=20)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: no answer from n1={address} within 10 s; is a node running there, and does "
        f"its keys directory hold this client's public key ({client_keys / 'client.key'})?\n"
    )


@pytest.mark.parametrize("port", ["99999", "*", "0"])
def test_a_connect_address_with_a_port_no_node_can_have_exits_2_at_once(
    port: str, env: dict[str, str]
) -> None:
    address = f"tcp://127.0.0.1:{port}"
    done = macp_cli("status", "--connect", address, env=env, timeout_s=8)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: connect address {address!r} is invalid; use tcp://HOST:PORT (PORT 1-65535)\n"
    )


def test_version_is_printed_by_the_flag_and_the_command(env: dict[str, str]) -> None:
    for args in (["--version"], ["version"]):
        done = macp_cli(*args, env=env)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"{macp.__version__}\n", "")


def test_up_reports_a_head_that_exits_before_it_is_ready_with_its_errors(
    tmp_path: Path, env: dict[str, str]
) -> None:
    file = tmp_path / "closer.yaml"
    file.write_text(
        textwrap.dedent("""\
            name: closer
            nodes:
              - {name: head, listen: "tcp://127.0.0.1:0"}
            agents:
              - {name: closer, class: "agents:OutputCloser"}
        """),
        encoding="utf-8",
    )
    done = macp_cli("up", str(file), "--task", "{}", env=env)
    assert (done.returncode, done.stdout) == (1, "")
    assert unlogged(done.stderr) == [
        "error: child 'closer' failed to start: RuntimeError: cannot reach its model server",
        (
            "error: node 'head' exited with code 2 before it was ready; the end of its "
            "standard error is above"
        ),
    ], done.stderr
    assert node_processes(env["MACP_DATA_DIR"]) == []
