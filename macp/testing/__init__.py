"""Helpers for testing agents and topologies built on macp (public, like ``trio.testing``).

- :class:`Probe` (and :class:`ProbedAgent`): handed to an agent at spawn time, it records what
  the agent sees and holds it at gates the test opens; no module globals.
- :class:`LocalCluster` (and :func:`cluster_fixture` for pytest): a head plus nodes, in this
  process or as node processes, started and stopped for a test.
- :func:`capture_logs` and :class:`LogEvents`: macp's structlog events as dicts.
- :func:`check_transport`: the contract a transport between two nodes keeps, checked.
- :func:`wait_until` and :class:`Recorder`: waits with deadlines.

See docs/testing.md.
"""

from macp.testing._cluster import LocalCluster as LocalCluster
from macp.testing._cluster import cluster_fixture as cluster_fixture
from macp.testing._logs import LogEvents as LogEvents
from macp.testing._logs import capture_logs as capture_logs
from macp.testing._probe import Probe as Probe
from macp.testing._probe import ProbedAgent as ProbedAgent
from macp.testing._process import NodeProcess as NodeProcess
from macp.testing._process import settings_flags as settings_flags
from macp.testing._transport_check import MakeTransport as MakeTransport
from macp.testing._transport_check import Transport as Transport
from macp.testing._transport_check import check_transport as check_transport
from macp.testing._transport_check import router_transport as router_transport
from macp.testing._waits import Recorder as Recorder
from macp.testing._waits import wait_until as wait_until

__all__ = [
    "LocalCluster",
    "LogEvents",
    "MakeTransport",
    "NodeProcess",
    "Probe",
    "ProbedAgent",
    "Recorder",
    "Transport",
    "capture_logs",
    "check_transport",
    "cluster_fixture",
    "router_transport",
    "settings_flags",
    "wait_until",
]
