"""Addresses: what ``tell``, ``ask`` and ``control`` accept, and the one-line error otherwise."""

from __future__ import annotations

import re

import pytest

from macp import ConfigError, Node
from macp.address import Address, check_address

ERROR = (
    "address {!r} is invalid; use name@node or a bare name, each name made of letters, "
    "digits and '_', '-', '.', ':'"
)


@pytest.mark.parametrize(
    "address",
    ["echo", "echo@n1", "w-1.a:b@node_2", "$node@n1", "$node@*", "$client@~3f2a", "a@~c1"],
)
def test_well_formed_addresses_are_accepted(address: str) -> None:
    assert check_address(address) == address
    assert check_address(address) == address  # the second time from the cache


@pytest.mark.parametrize(
    "address", ["", "a@", "@n", "a@@b", "a@n@m", "a b", "a@n 1", "é@n", "a@~", "$@n", "a@$n", 3]
)
def test_malformed_addresses_are_refused_naming_the_form(address: object) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(ERROR.format(address))}$"):
        check_address(address)


@pytest.mark.parametrize("send", ["tell", "ask", "control"])
def test_a_node_refuses_a_malformed_address_before_sending(send: str) -> None:
    node = Node("n")  # not started: the address is checked before anything is sent
    args = {"tell": ("x",), "ask": ("x",), "control": ("status",)}[send]
    with pytest.raises(ConfigError, match=r"^address 'a@@b' is invalid"):
        getattr(node, send)("a@@b", *args)
    assert node.counters["undeliverable"] == 0


def test_address_parse_splits_name_and_node() -> None:
    assert Address.parse("echo@n1") == Address("echo", "n1")
    assert str(Address("echo", "n1")) == "echo@n1"
    with pytest.raises(ConfigError, match=r"^address 'echo' must be of the form name@node$"):
        Address.parse("echo")
