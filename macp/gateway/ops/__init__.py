"""Every operation the gateway serves, in :data:`OPERATIONS`: each module adds its own.

- :mod:`~macp.gateway.ops.tasks`: task_orchestrate, task_status, task_result, task_cancel,
  task_list
- :mod:`~macp.gateway.ops.swarms`: agent_spawn, swarm_init, swarm_status
- :mod:`~macp.gateway.ops.agents`: agent_list, find_agents, agent_status, agent_control,
  agent_message
- :mod:`~macp.gateway.ops.workflows`: workflow_define, workflow_execute, workflow_status,
  workflow_pause, workflow_resume, workflow_cancel, workflow_list
- :mod:`~macp.gateway.ops.state`: memory_store, memory_retrieve, memory_delete, memory_list,
  lock_acquire, lock_release, lock_check, resource_allocate, resource_release, resource_usage
- :mod:`~macp.gateway.ops.checks`: check_agent_responsiveness,
  check_message_recipient_status, check_message_frequency
- :mod:`~macp.gateway.ops.system`: ping, metrics
- :mod:`~macp.gateway.ops.views`: topology_shape, metrics_history (what the dashboard draws)
"""

from __future__ import annotations

from macp.gateway.ops import agents, checks, state, swarms, system, tasks, views, workflows
from macp.gateway.ops._table import OPERATIONS

__all__ = ["OPERATIONS"]

# imported for the operations they add
del agents, checks, state, swarms, system, tasks, views, workflows
