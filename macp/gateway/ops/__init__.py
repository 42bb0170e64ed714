"""Every operation the gateway serves, in :data:`OPERATIONS`: each module adds its own.

- :mod:`~macp.gateway.ops.tasks`: task_orchestrate, task_status, task_result, task_cancel,
  task_list
- :mod:`~macp.gateway.ops.system`: ping
"""

from __future__ import annotations

from macp.gateway.ops import system, tasks
from macp.gateway.ops._table import OPERATIONS

__all__ = ["OPERATIONS"]

del system, tasks  # imported for the operations they add
