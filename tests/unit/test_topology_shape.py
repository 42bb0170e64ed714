"""A topology file's shape as the head records it for the dashboard: nodes, each declared
agent's instances, and the edges each kind draws (hub to spokes, stage to stage, lead to
children; none between peers or in a file with no topology)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from macp.topologies.load import load_spec, parse_spec
from macp.topologies.shape import shape_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_hierarchy_has_an_edge_from_each_lead_to_each_child() -> None:
    shape = shape_of(load_spec(EXAMPLES / "hierarchy" / "topology.yaml"))
    assert (shape["name"], shape["kind"], shape["head"]) == ("hierarchy", "hierarchical", "hq")
    assert shape["nodes"] == ["hq", "team-a", "team-b"]
    assert shape["edges"] == [
        ["director", "lead-a"], ["director", "lead-b"], ["lead-a", "worker-a"],
        ["lead-b", "worker-b"],
    ]  # fmt: skip
    assert shape["agents"]["worker-a"] == {
        "role": None, "group": None, "instances": ["worker-a-1@team-a", "worker-a-2@team-a"],
    }  # fmt: skip


def test_a_hub_has_an_edge_to_each_spoke_and_replicas_are_spread_over_their_nodes() -> None:
    shape = shape_of(load_spec(EXAMPLES / "wordcount" / "topology.yaml"))
    assert (shape["kind"], shape["edges"]) == ("hub-and-spoke", [["splitter", "counter"]])
    assert shape["agents"]["counter"]["instances"] == [
        "counter-1@worker", "counter-2@head", "counter-3@worker",
    ]  # fmt: skip
    assert shape["agents"]["splitter"]["instances"] == ["splitter@head"]


def test_an_assembly_line_has_an_edge_from_each_stage_to_the_next() -> None:
    shape = shape_of(load_spec(EXAMPLES / "pipeline" / "topology.yaml"))
    assert shape["edges"] == [
        ["ingest", "parse"], ["parse", "transform"], ["transform", "validate"],
        ["validate", "aggregate"], ["aggregate", "output"],
    ]  # fmt: skip
    assert shape["agents"]["line"]["instances"] == ["line@head"]  # the line runs the stages


def test_peers_and_a_file_with_no_topology_have_no_edges() -> None:
    peers = shape_of(load_spec(EXAMPLES / "peers" / "topology.yaml"))
    assert (peers["kind"], peers["edges"]) == ("peer-to-peer", [])
    assert sorted(peers["agents"]) == ["analyst", "factorer", "statistician"]
    bare = parse_spec(textwrap.dedent("""\
        name: bare
        nodes: [{name: solo, listen: "tcp://127.0.0.1:0"}]
        agents: [{name: a, class: "macp:Agent", role: r, group: g}]
    """))  # fmt: skip
    assert shape_of(bare) == {
        "name": "bare", "kind": None, "nodes": ["solo"], "head": "solo",
        "agents": {"a": {"role": "r", "group": "g", "instances": ["a@solo"]}}, "edges": [],
    }  # fmt: skip
