"""The topology file: every validation error names the file, the line and the field, exactly;
``macp validate`` prints a summary of a good file and every error of a bad one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from macp.errors import ConfigError
from macp.topologies.load import parse_spec

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from macp.topologies.spec import TopologySpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PORTS = re.compile(r"^(WORDCOUNT|PIPELINE|PEERS|HIERARCHY)_\w+_PORT$")

# One node, one agent; the line numbers below count from "name: t" as line 1.
BASE = """\
name: t
nodes:
  - name: head
    listen: tcp://127.0.0.1:0
    head: true
agents:
  - name: echo
    class: agents:Echo
"""

# A hierarchy: lines 6-8 are the agents, 13-14 the tree.
TREE = """\
name: t
nodes:
  - name: head
    listen: tcp://127.0.0.1:0
agents:
  - {name: boss, class: "macp:Hub"}
  - {name: lead, class: "macp:Hub"}
  - {name: worker, class: "agents:Squarer"}
topology:
  kind: hierarchical
  root: boss
  tree:
    boss: [lead]
    lead: [worker]
"""


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def raises(message: str) -> AbstractContextManager[pytest.ExceptionInfo[ConfigError]]:
    """``pytest.raises`` for a ConfigError whose message is exactly ``message``."""
    return pytest.raises(ConfigError, match=exactly(message))


def parse(text: str) -> TopologySpec:
    return parse_spec(textwrap.dedent(text), "topo.yaml")


def test_the_files_these_tests_break_are_valid() -> None:
    assert [(inst, node) for inst, _, node in parse(BASE).placement()] == [("echo", "head")]
    assert [(inst, node) for inst, _, node in parse(TREE).placement()] == [
        ("boss", "head"),
        ("lead", "head"),
        ("worker", "head"),
    ]


def test_replicas_are_numbered_and_spread_over_their_nodes_in_turn() -> None:
    spec = parse(
        BASE.replace("agents:\n", "  - name: gpu\n    listen: tcp://127.0.0.1:0\nagents:\n")
        + "    node: [gpu, head]\n    replicas: 3\n"
    )
    assert spec.addresses("echo") == ["echo-1@gpu", "echo-2@head", "echo-3@gpu"]


# -- unknown keys ---------------------------------------------------------------------------------


def test_an_unknown_top_level_key_is_reported_with_the_keys_expected() -> None:
    with raises(
        "topo.yaml:9: bogus: unknown key 'bogus'; expected one of: name, nodes, agents, "
        "supervision, topology, resources, workflows, monitor, coordinator, settings, "
        "gateway"
    ):
        parse(BASE + "bogus: 1\n")


def test_an_unknown_node_key_is_reported_with_the_keys_expected() -> None:
    with raises(
        "topo.yaml:6: nodes[0].port: unknown key 'port'; "
        "expected one of: name, listen, head, keys, insecure"
    ):
        parse(BASE.replace("    head: true\n", "    head: true\n    port: 5555\n"))


def test_an_unknown_agent_key_is_reported_with_the_keys_expected() -> None:
    with raises(
        "topo.yaml:9: agents[0].colour: unknown key 'colour'; expected one of: name, class, "
        "node, replicas, capabilities, role, group, model_type, model_version, config, restart"
    ):
        parse(BASE + "    colour: red\n")


# -- shape ----------------------------------------------------------------------------------------


def test_a_missing_required_field_is_reported_at_the_item_that_lacks_it() -> None:
    with raises("topo.yaml:3: nodes[0].listen: is required"):
        parse(BASE.replace("    listen: tcp://127.0.0.1:0\n", ""))


def test_a_value_of_the_wrong_type_is_reported_with_the_type_expected() -> None:
    with raises(
        "topo.yaml:9: agents[0].replicas: must be a valid integer, "
        "unable to parse string as an integer"
    ):
        parse(BASE + "    replicas: many\n")


def test_an_unknown_topology_kind_is_reported_with_the_kinds_expected() -> None:
    with raises(
        "topo.yaml:10: topology: 'kind' must be one of hub-and-spoke, peer-to-peer, "
        "assembly-line, hierarchical"
    ):
        parse(BASE + "topology:\n  kind: star\n")


def test_a_topology_without_a_kind_names_the_kinds_expected() -> None:
    with raises(
        "topo.yaml:10: topology: 'kind' must be one of hub-and-spoke, peer-to-peer, "
        "assembly-line, hierarchical"
    ):
        parse(BASE + "topology:\n  hub: echo\n")


def test_a_file_that_is_not_a_map_is_reported_at_line_1() -> None:
    with raises("topo.yaml:1: a topology file is a map with name, nodes and agents"):
        parse("- head\n- echo\n")


# -- agent classes --------------------------------------------------------------------------------


def test_an_agent_class_missing_from_its_module_is_reported() -> None:
    with raises("topo.yaml:8: agents[0].class: module 'agents' has no class 'Nope'"):
        parse(BASE.replace("agents:Echo", "agents:Nope"))


def test_an_agent_module_that_raises_at_import_is_reported_with_the_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "spec_raises_at_import.py").write_text(
        "raise RuntimeError('the model server is not reachable')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with raises(
        "topo.yaml:8: agents[0].class: importing 'spec_raises_at_import' raised "
        "RuntimeError: the model server is not reachable"
    ):
        parse(BASE.replace("agents:Echo", "spec_raises_at_import:Echo"))


def test_an_agent_module_whose_own_import_fails_names_the_missing_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "spec_needs_a_dependency.py").write_text(
        "import spec_dependency_not_installed\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with raises(
        "topo.yaml:8: agents[0].class: module 'spec_needs_a_dependency' imports "
        "'spec_dependency_not_installed', which is not installed; install it, or fix that import"
    ):
        parse(BASE.replace("agents:Echo", "spec_needs_a_dependency:Echo"))


def test_a_class_path_without_a_colon_is_reported_with_the_form_expected() -> None:
    with raises(
        "topo.yaml:8: agents[0].class: 'agents.Echo' is not an import path; "
        "write package.module:Class"
    ):
        parse(BASE.replace("agents:Echo", "agents.Echo"))


def test_a_class_that_is_not_an_agent_is_reported() -> None:
    with raises("topo.yaml:8: agents[0].class: textwrap:TextWrapper is not an Agent subclass"):
        parse(BASE.replace("agents:Echo", "textwrap:TextWrapper"))


# -- names and placement --------------------------------------------------------------------------


def test_an_agent_on_an_undeclared_node_is_reported_with_the_nodes_declared() -> None:
    with raises(
        "topo.yaml:9: agents[0].node: agent 'echo' is placed on node 'gpu', which is not "
        "declared; use one of: head"
    ):
        parse(BASE + "    node: gpu\n")


def test_a_node_declared_twice_is_reported_at_the_second() -> None:
    twice = BASE.replace("agents:\n", "  - name: head\n    listen: tcp://127.0.0.1:0\nagents:\n")
    with raises("topo.yaml:6: nodes[1].name: 'head' is declared twice; names must be unique"):
        parse(twice)


def test_an_agent_declared_twice_is_reported_at_the_second() -> None:
    with raises("topo.yaml:9: agents[1].name: 'echo' is declared twice; names must be unique"):
        parse(BASE + "  - name: echo\n    class: agents:Squarer\n")


def test_two_heads_are_reported_at_the_second() -> None:
    second = "  - name: spare\n    listen: tcp://127.0.0.1:0\n    head: true\nagents:\n"
    with raises(
        "topo.yaml:8: nodes[1].head: only one node can be the head (it runs the control plane)"
    ):
        parse(BASE.replace("agents:\n", second))


def test_a_listen_address_without_a_scheme_is_reported_with_the_form_expected() -> None:
    with raises(
        "topo.yaml:4: nodes[0].listen: listen address '127.0.0.1:5555' is invalid; "
        "use tcp://HOST:PORT (PORT 0 picks a free one)"
    ):
        parse(BASE.replace("tcp://127.0.0.1:0", "127.0.0.1:5555"))


# -- topologies -----------------------------------------------------------------------------------


def test_a_stage_naming_an_undeclared_agent_is_reported_with_the_agents_declared() -> None:
    line = BASE + textwrap.dedent("""\
        topology:
          kind: assembly-line
          stages:
            - {agent: echo, mode: all}
            - {agent: ghost}
    """)
    with raises(
        "topo.yaml:13: topology.stages[1]: 'ghost' is not a declared agent; declare it under "
        "agents (declared: echo)"
    ):
        parse(line)


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        (
            "    lead: [worker]\n    ghost: [worker]\n",
            (
                "topo.yaml:15: topology.tree.ghost: 'ghost' is not a declared agent; declare it "
                "under agents (declared: boss, lead, worker)"
            ),
        ),
        (
            "    lead: [worker, phantom]\n",
            (
                "topo.yaml:14: topology.tree.lead[1]: 'phantom' is not a declared agent; "
                "declare it under agents (declared: boss, lead, worker)"
            ),
        ),
    ],
    ids=["lead", "member"],
)
def test_a_hierarchy_naming_an_undeclared_agent_is_reported(tree: str, expected: str) -> None:
    with raises(expected):
        parse(TREE.replace("    lead: [worker]\n", tree))


def test_a_cycle_in_a_hierarchy_is_reported_with_its_path() -> None:
    with raises(
        "topo.yaml:13: topology.tree.boss: the hierarchy has a cycle: boss -> lead -> boss"
    ):
        parse(TREE.replace("lead: [worker]", "lead: [boss]"))


def test_a_lead_that_is_not_a_hub_is_reported() -> None:
    with raises(
        "topo.yaml:14: topology.tree.lead: agent 'lead' leads others, so it must be a "
        "macp.Hub subclass"
    ):
        parse(TREE.replace('lead, class: "macp:Hub"', 'lead, class: "agents:Squarer"'))


def test_a_hub_that_is_not_a_hub_subclass_is_reported() -> None:
    star = textwrap.dedent("""\
        name: t
        nodes:
          - name: head
            listen: tcp://127.0.0.1:0
        agents:
          - {name: boss, class: "agents:Squarer"}
          - {name: worker, class: "agents:Squarer"}
        topology:
          kind: hub-and-spoke
          hub: boss
          spokes: [worker]
    """)
    with raises(
        "topo.yaml:10: topology.hub: agent 'boss' must be a macp.Hub subclass (decompose/merge)"
    ):
        parse(star)


STAR = """\
name: t
nodes:
  - name: head
    listen: tcp://127.0.0.1:0
agents:
  - {name: boss, class: "macp:Hub"}
  - {name: worker, class: "agents:Echo"}
topology:
  kind: hub-and-spoke
  hub: boss
  spokes: [worker]
"""


def test_a_spoke_with_several_handlers_must_be_given_its_task_type() -> None:
    with raises(
        "topo.yaml:11: topology.spokes[0]: agent 'worker' handles echo, fail, hang, refuse: "
        "set its config.task_type to the type this topology should send it"
    ):
        parse(STAR)
    chosen = parse(STAR.replace('"agents:Echo"}', '"agents:Echo", config: {task_type: echo}}'))
    assert chosen.agent("worker").config == {"task_type": "echo"}


# -- workflows ------------------------------------------------------------------------------------


def test_a_workflow_with_a_cycle_is_reported_at_the_workflow() -> None:
    looped = BASE + textwrap.dedent("""\
        workflows:
          - name: loop
            steps:
              - {id: a, type: echo, depends_on: [b]}
              - {id: b, type: echo, depends_on: [a]}
    """)
    with raises("topo.yaml:10: workflows[0]: workflow 'loop': the steps form a cycle: a -> b -> a"):
        parse(looped)


def test_workflow_templates_are_left_for_the_workflow() -> None:
    spec = parse(
        BASE
        + textwrap.dedent("""\
        workflows:
          - name: one
            steps:
              - {id: a, type: echo, body: {x: "${input.x}", y: "${deps.a}"}}
    """)
    )
    assert spec.workflows[0].steps[0].body == {"x": "${input.x}", "y": "${deps.a}"}


def test_a_workflow_step_with_an_unknown_key_is_reported_at_its_line() -> None:
    with raises(
        "topo.yaml:12: workflows[0].steps[0].retry: unknown key 'retry'; expected one of: id, "
        "description, type, body, depends_on, capabilities, role, agent, timeout_s, retries, "
        "priority, resources, on_failure"
    ):
        parse(BASE + "workflows:\n  - name: w\n    steps:\n      - {id: a, type: echo, retry: 2}\n")


def test_a_step_depending_on_no_step_is_reported_at_the_dependency() -> None:
    steps = "      - {id: a, type: echo}\n      - id: b\n        type: echo\n"
    with raises(
        "topo.yaml:16: workflows[0].steps[1].depends_on[1]: workflow 'w': step 'b' depends on "
        "'ghost', which is not a step"
    ):
        parse(BASE + "workflows:\n  - name: w\n    steps:\n" + steps
              + "        depends_on: [a,\n          ghost]\n")  # fmt: skip


def test_a_step_whose_type_no_agent_of_the_file_handles_is_reported() -> None:
    with raises(
        "topo.yaml:12: workflows[0].steps[0].type: no agent of this file handles 'summarize', "
        "so the step would wait for one forever; use a type one handles: echo, fail, hang, refuse"
    ):
        parse(BASE + "workflows:\n  - name: w\n    steps:\n      - {id: a, type: summarize}\n")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "capabilities: [square]",
            (
                "workflows[0].steps[0].capabilities: no agent of this file has the capabilities "
                "[square], so the step would wait for one forever; capabilities declared: (none)"
            ),
        ),
        (
            "role: squarer",
            (
                "workflows[0].steps[0].role: no agent of this file has the role 'squarer', so "
                "the step would wait for one forever; roles declared: (none)"
            ),
        ),
        (
            "agent: echo",
            (
                "workflows[0].steps[0].agent: no agent of this file is 'echo', so the step "
                "would wait for it forever; name an instance as NAME@NODE: echo@head"
            ),
        ),
    ],
    ids=["capabilities", "role", "agent"],
)
def test_a_step_that_no_agent_of_the_file_could_take_is_reported(
    target: str, expected: str
) -> None:
    with raises(f"topo.yaml:12: {expected}"):
        parse(BASE + "workflows:\n  - name: w\n    steps:\n"
              f"      - {{id: a, type: echo, {target}}}\n")  # fmt: skip


def test_a_step_routed_to_agents_that_do_not_handle_its_type_is_reported() -> None:
    squarer = BASE + "  - {name: sq, class: agents:Squarer}\n"
    with raises(
        "topo.yaml:13: workflows[0].steps[0].type: the agents that could take the step (sq) "
        "do not handle 'echo'; they handle: square"
    ):
        parse(squarer + "workflows:\n  - name: w\n    steps:\n"
              "      - {id: a, type: echo, capabilities: [square]}\n")  # fmt: skip
    spec = parse(squarer + "workflows:\n  - name: w\n    steps:\n"
                 "      - {id: a, type: square, role: squarer}\n"
                 "      - {id: b, type: echo, agent: echo@head}\n")  # fmt: skip
    assert [s.id for s in spec.workflows[0].steps] == ["a", "b"]


def test_step_resources_must_name_declared_pools_within_their_capacity() -> None:
    steps = (
        "resources: {gpu: 2}\n"
        "workflows:\n  - name: w\n    steps:\n"
        "      - {id: a, type: echo, resources: {cpu: 1}}\n"
        "      - {id: b, type: echo, resources: {gpu: 4}}\n"
        "      - {id: c, type: echo, resources: {gpu: 2}}\n"
    )
    with raises(
        "topo.yaml:13: workflows[0].steps[0].resources.cpu: pool 'cpu' is not declared; "
        "declare it under resources (declared: gpu)\n"
        "topo.yaml:14: workflows[0].steps[1].resources.gpu: 4 of pool 'gpu' is more than its "
        "capacity of 2, so the step could never run; ask for at most 2, or raise the capacity"
    ):
        parse(BASE + steps)


# -- monitor and coordinator ----------------------------------------------------------------------


def test_a_monitor_rule_with_an_unknown_key_is_reported_with_the_keys_expected() -> None:
    with raises(
        "topo.yaml:12: monitor.rules[0].exp: unknown key 'exp'; expected one of: name, expr, "
        "metric, op, threshold, for_s, cooldown_s"
    ):
        parse(BASE + "monitor:\n  rules:\n    - name: slow\n      exp: 'tasks.error_rate > 0.5'\n")


def test_an_unknown_monitor_option_is_reported_with_the_options_expected() -> None:
    with raises(
        "topo.yaml:10: monitor.prometheus_prot: unknown key 'prometheus_prot'; expected one of: "
        "sample_s, window_s, history_size, rules, prometheus_port, prometheus_addr, models"
    ):
        parse(BASE + "monitor:\n  prometheus_prot: 9108\n")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "{name: slow, expr: 'p95 is high'}",
            (
                "monitor.rules[0].expr: must read 'METRIC OP THRESHOLD [for Ns]', e.g. "
                "'tasks.error_rate{type=x} > 0.5 for 10s', not 'p95 is high'"
            ),
        ),
        (
            "{name: slow, metric: m, op: '>'}",
            "monitor.rules[0]: 'threshold' is required (or give the whole condition as 'expr')",
        ),
        (
            "{name: slow, metric: m, op: '~', threshold: 1}",
            "monitor.rules[0].op: must be one of >, >=, <, <=, ==, !=, not '~'",
        ),
        (
            "{name: slow, expr: 'm > 1', metric: m}",
            (
                "monitor.rules[0]: give the condition as 'expr' or as 'metric', 'op' and "
                "'threshold', not both"
            ),
        ),
    ],
    ids=["expr", "missing", "op", "both"],
)
def test_a_malformed_monitor_rule_is_reported_at_its_line(rule: str, expected: str) -> None:
    with raises(f"topo.yaml:11: {expected}"):
        parse(BASE + f"monitor:\n  rules:\n    - {rule}\n")


def test_monitor_options_are_typed() -> None:
    with raises(
        "topo.yaml:10: monitor.sample_s: must be a number\n"
        "topo.yaml:11: monitor.prometheus_port: must be less than or equal to 65535"
    ):
        parse(BASE + "monitor:\n  sample_s: fast\n  prometheus_port: 70000\n")


def test_an_unknown_coordinator_option_is_reported_with_the_options_expected() -> None:
    with raises(
        "topo.yaml:10: coordinator.max_inflight: unknown key 'max_inflight'; expected one of: "
        "max_in_flight, breaker_failures, breaker_cooldown_s, prefer_scored"
    ):
        parse(BASE + "coordinator:\n  max_inflight: 2\n")


def test_coordinator_options_are_typed() -> None:
    with raises(
        "topo.yaml:10: coordinator.max_in_flight: must be greater than or equal to 1\n"
        "topo.yaml:11: coordinator.breaker_cooldown_s: must be a number"
    ):
        parse(BASE + "coordinator:\n  max_in_flight: 0\n  breaker_cooldown_s: soon\n")
    spec = parse(BASE + "coordinator: {max_in_flight: 8, breaker_failures: 5}\n")
    assert (spec.coordinator.max_in_flight, spec.coordinator.breaker_cooldown_s) == (8, 10.0)


def test_the_journal_retention_is_typed_and_a_bound_may_be_turned_off() -> None:
    with raises(
        "topo.yaml:11: settings.journal_retention.max_tasks: must be greater than or equal to 1\n"
        "topo.yaml:12: settings.journal_retention.max_age_s: must be a number"
    ):
        parse(BASE + "settings:\n  journal_retention:\n    max_tasks: 0\n    max_age_s: a day\n")
    with raises(
        "topo.yaml:11: settings.journal_retention.max_age: unknown key 'max_age'; expected one "
        "of: max_age_s, max_tasks, max_runs"
    ):
        parse(BASE + "settings:\n  journal_retention:\n    max_age: 60\n")
    kept = parse(BASE + "settings: {journal_retention: {max_tasks: null}}\n").settings
    assert (kept.journal_retention.max_tasks, kept.journal_retention.max_age_s) == (None, 86400)
    assert kept.journal_retention.max_runs == 10_000


# -- environment variables ------------------------------------------------------------------------


def test_a_variable_is_replaced_by_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEC_TEST_PORT", "6001")
    spec = parse(BASE.replace("127.0.0.1:0", "127.0.0.1:${SPEC_TEST_PORT}"))
    assert spec.nodes[0].listen == "tcp://127.0.0.1:6001"


def test_a_default_is_used_when_the_variable_is_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPEC_TEST_PORT", raising=False)
    spec = parse(BASE.replace("127.0.0.1:0", "127.0.0.1:${SPEC_TEST_PORT:-7001}"))
    assert spec.nodes[0].listen == "tcp://127.0.0.1:7001"


def test_a_variable_that_is_set_wins_over_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEC_TEST_PORT", "6002")
    spec = parse(BASE.replace("127.0.0.1:0", "127.0.0.1:${SPEC_TEST_PORT:-7001}"))
    assert spec.nodes[0].listen == "tcp://127.0.0.1:6002"


def test_a_variable_set_to_nothing_takes_its_default_as_in_the_shell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPEC_TEST_PORT", "")
    spec = parse(BASE.replace("127.0.0.1:0", "127.0.0.1:${SPEC_TEST_PORT:-7001}"))
    assert spec.nodes[0].listen == "tcp://127.0.0.1:7001"


def test_a_missing_variable_without_default_is_reported_with_its_name_and_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SPEC_TEST_MISSING", raising=False)
    with raises(
        "topo.yaml:4: environment variable SPEC_TEST_MISSING is not set; set it, or write "
        "${SPEC_TEST_MISSING:-default}"
    ):
        parse(BASE.replace("127.0.0.1:0", "127.0.0.1:${SPEC_TEST_MISSING}"))


def test_variables_are_put_into_values_so_they_cannot_change_the_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SPEC_TEST_MISSING", raising=False)
    monkeypatch.setenv("SPEC_TEST_TEXT", "a: b # not a comment")
    monkeypatch.setenv("SPEC_TEST_COUNT", "3")
    spec = parse(
        BASE.replace("agents:\n", "# ${SPEC_TEST_MISSING} in a comment is left alone\nagents:\n")
        + "    config:\n"
        + "      text: ${SPEC_TEST_TEXT}\n"
        + "      count: ${SPEC_TEST_COUNT}\n"
        + "      quoted: '${SPEC_TEST_COUNT}'\n"
    )
    assert spec.agents[0].config == {"text": "a: b # not a comment", "count": 3, "quoted": "3"}


# -- YAML -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: t\nnodes:\n  - name: head\n   listen: tcp://127.0.0.1:0\n",
            "topo.yaml:4: not valid YAML: expected <block end>, but found '<block mapping start>'",
        ),
        (
            "name: t\n\tnodes: []\n",
            "topo.yaml:2: not valid YAML: found character '\\t' that cannot start any token",
        ),
    ],
    ids=["indentation", "tab"],
)
def test_invalid_yaml_is_reported_with_the_line_of_the_problem(text: str, expected: str) -> None:
    with raises(expected):
        parse_spec(text, "topo.yaml")


def test_an_unclosed_quote_is_reported_where_it_opens() -> None:
    with pytest.raises(ConfigError, match=r"^topo\.yaml:1: not valid YAML: "):
        parse_spec('name: "t\nnodes: []\n', "topo.yaml")


# -- macp validate --------------------------------------------------------------------------------


def validate(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not EXAMPLE_PORTS.match(k)}
    return subprocess.run(
        [sys.executable, "-m", "macp", "validate", str(path)],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("example", "first", "last"),
    [
        (
            "wordcount",
            "topology wordcount (hub-and-spoke): 2 nodes, 2 agents, 4 instances",
            "workflows: (none)",
        ),
        (
            "pipeline",
            "topology pipeline (assembly-line): 2 nodes, 6 agents, 9 instances",
            "workflows: (none)",
        ),
        (
            "peers",
            "topology peers (peer-to-peer): 2 nodes, 3 agents, 4 instances",
            "workflows: summary",
        ),
        (
            "hierarchy",
            "topology hierarchy (hierarchical): 3 nodes, 5 agents, 7 instances",
            "workflows: (none)",
        ),
    ],
    ids=["wordcount", "pipeline", "peers", "hierarchy"],
)
def test_validate_accepts_each_example_and_prints_its_summary(
    example: str, first: str, last: str
) -> None:
    done = validate(Path("examples") / example / "topology.yaml")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert (lines[0], lines[-1]) == (first, last)


def test_validate_prints_nodes_and_agents_with_variables_replaced() -> None:
    done = validate(Path("examples/wordcount/topology.yaml"), WORDCOUNT_HEAD_PORT="5555")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == textwrap.dedent("""\
        topology wordcount (hub-and-spoke): 2 nodes, 2 agents, 4 instances
        nodes:
          head         tcp://127.0.0.1:5555       head
          worker       tcp://127.0.0.1:0
        agents:
          splitter     x1   on head             examples.wordcount.agents:Splitter
          counter      x3   on head, worker     examples.wordcount.agents:Counter
        workflows: (none)
    """)


def test_validate_of_a_bad_file_exits_1_with_each_error_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = BASE.replace("head: true", "head: true\n    colour: red") + "  - name: x\n    class: 1\n"
    bad.write_text(text, encoding="utf-8")
    done = validate(bad)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: {bad}:6: nodes[0].colour: unknown key 'colour'; expected one of: name, listen, "
        "head, keys, insecure\n"
        f"error: {bad}:11: agents[1].class: must be a valid string\n"
    )


def test_validate_refuses_what_up_would_refuse_or_wait_on_forever(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        BASE
        + textwrap.dedent("""\
            resources: {cpu: 4}
            monitor:
              prometheus_prot: 9108
              rules:
                - {name: slow, exp: "tasks.duration_p95_ms{type=echo} > 500"}
            coordinator: {max_inflight: 2}
            workflows:
              - name: w
                steps:
                  - {id: a, type: summarize}
                  - {id: b, type: echo, resources: {gpu: 1}}
        """),
        encoding="utf-8",
    )
    tests = str(ROOT / "tests")  # where agents:Echo is
    done = validate(bad, PYTHONPATH=tests)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: {bad}:11: monitor.prometheus_prot: unknown key 'prometheus_prot'; expected one "
        "of: sample_s, window_s, history_size, rules, prometheus_port, prometheus_addr, models\n"
        f"error: {bad}:13: monitor.rules[0].exp: unknown key 'exp'; expected one of: name, "
        "expr, metric, op, threshold, for_s, cooldown_s\n"
        f"error: {bad}:14: coordinator.max_inflight: unknown key 'max_inflight'; expected one "
        "of: max_in_flight, breaker_failures, breaker_cooldown_s, prefer_scored\n"
    )
    fixed = bad.read_text(encoding="utf-8")
    for typo, right in (("prometheus_prot", "prometheus_port"), ("exp:", "expr:"),
                        ("max_inflight", "max_in_flight")):  # fmt: skip
        fixed = fixed.replace(typo, right)
    bad.write_text(fixed, encoding="utf-8")
    done = validate(bad, PYTHONPATH=tests)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: {bad}:18: workflows[0].steps[0].type: no agent of this file handles "
        "'summarize', so the step would wait for one forever; use a type one handles: echo, "
        "fail, hang, refuse\n"
        f"error: {bad}:19: workflows[0].steps[1].resources.gpu: pool 'gpu' is not declared; "
        "declare it under resources (declared: cpu)\n"
    )


def test_validate_of_a_missing_file_exits_1_naming_it(tmp_path: Path) -> None:
    done = validate(tmp_path / "nowhere.yaml")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: cannot read topology file {tmp_path / 'nowhere.yaml'}: No such file or directory\n"
    )
