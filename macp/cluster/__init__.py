"""The Python API of the control plane, from anywhere.

On the head, :func:`~macp.control_plane.start_control_plane` (re-exported here) starts it.
Anywhere else: ``Cluster(node)`` (from a node whose ``head`` is set, or from an agent as
``Cluster(self.node)``), or ``macp.connect("tcp://head:5555")`` from a script, submits tasks and
reads results without knowing which node hosts what::

    with macp.connect("tcp://10.0.0.1:5555") as cluster:
        task = cluster.submit("summarize", {"text": "..."})
        print(task.result(timeout_s=30))
"""

from __future__ import annotations

from macp.cluster._cluster import RETRY_FIRST_S, RETRY_MAX_S, Cluster, connect
from macp.cluster._handles import Run, Task
from macp.cluster._spawn import NODE_INFO, choose_node, spawn_body
from macp.control_plane import start_control_plane

__all__ = [
    "NODE_INFO",
    "RETRY_FIRST_S",
    "RETRY_MAX_S",
    "Cluster",
    "Run",
    "Task",
    "choose_node",
    "connect",
    "spawn_body",
    "start_control_plane",
]
