"""The gateway's node joins a cluster through any member and learns its head; operations run
through it reach the control plane on a head in another process."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import pytest
from procs import QUICK_CLUSTER, QUICK_CLUSTER_FLAGS

from macp import AskTimeout, ConfigError
from macp.gateway import OPERATIONS, Member

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp import Node
    from macp.testing import NodeProcess

pytestmark = pytest.mark.integration


def test_a_member_joined_through_a_worker_reaches_the_head_process(
    procs: Callable[..., NodeProcess],
) -> None:
    head = procs("head", "--control-plane", *QUICK_CLUSTER_FLAGS)
    assert head.address is not None
    worker = procs("w1", "--join", head.address, *QUICK_CLUSTER_FLAGS)
    assert worker.address is not None
    with Member.join(worker.address, name="gw", settings=QUICK_CLUSTER) as member:
        assert member.cluster.head == "head"
        answer = asyncio.run(OPERATIONS["task_list"].call(member.runtime, {}))
        assert (answer["tasks"], answer["count"], answer["total"]) == ([], 0, 0)


def test_a_member_with_no_head_to_learn_is_refused(make_node: Callable[..., Node]) -> None:
    lone = make_node("lone", listen="tcp://127.0.0.1:0", settings=QUICK_CLUSTER)
    assert lone.address is not None
    with pytest.raises(ConfigError, match=r"knows no head; start one node .* --control-plane"):
        Member.join(lone.address, name="gw", settings=QUICK_CLUSTER, timeout_s=5)


def test_nobody_at_the_address_is_a_timeout_naming_it() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(AskTimeout, match=rf"no answer from {address} within 0.5 s"):
        Member.join(address, name="gw", settings=QUICK_CLUSTER, timeout_s=0.5)
