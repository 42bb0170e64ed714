"""A topology file's gateway section: the classes its nodes let others spawn (each must import
and be an Agent), and the gateway's listeners as HOST:PORT."""

from __future__ import annotations

import pytest
from test_spec import BASE, parse

from macp.errors import ConfigError


def test_the_gateway_section_is_read_and_its_classes_checked() -> None:
    spec = parse(BASE + "gateway:\n  spawnable: [agents:Echo]\n  jsonrpc: 127.0.0.1:8700\n")
    assert spec.gateway.spawnable == ["agents:Echo"]
    assert spec.gateway.jsonrpc == "127.0.0.1:8700"
    assert spec.gateway.mcp_http is None
    assert parse(BASE).gateway.spawnable == []


def test_a_spawnable_class_that_is_not_an_agent_is_reported_where_it_is_written() -> None:
    with pytest.raises(ConfigError, match=r"topo\.yaml:10: .*agents:Opaque is not an Agent"):
        parse(BASE + "gateway:\n  spawnable: [agents:Echo, agents:Opaque]\n")


def test_a_listener_must_be_host_and_port() -> None:
    with pytest.raises(ConfigError, match=r"topo\.yaml:\d+: gateway\.mcp_http"):
        parse(BASE + "gateway:\n  mcp_http: tcp://0.0.0.0\n")
