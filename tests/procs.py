"""What the tests that run node processes share: where the test agents live, and liveness
settings a node in this process and node processes agree on. The processes themselves are
:class:`macp.testing.NodeProcess` (the ``procs`` fixture) or :class:`macp.testing.LocalCluster`.
"""

from __future__ import annotations

from pathlib import Path

from macp import Settings
from macp.testing import settings_flags

TESTS = Path(__file__).parent  # tests/agents.py is importable as ``agents`` from here

# Fast liveness for clusters under test: a node in this process with QUICK_CLUSTER, node
# processes with QUICK_CLUSTER_FLAGS, so both sides agree on when a peer is down.
QUICK_CLUSTER = Settings(
    strict=True,
    supervisor_check_interval_s=0.05,
    ask_timeout_s=5.0,
    heartbeat_interval_s=0.1,
    acceptable_pause_s=0.2,
)
QUICK_CLUSTER_FLAGS = settings_flags(QUICK_CLUSTER)
