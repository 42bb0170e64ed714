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
- :mod:`~macp.gateway.ops.evaluations`: evaluate_contribution, agent_evaluations,
  performance_scores, model_metrics, model_health
- :mod:`~macp.gateway.ops.sessions`: create_collaboration_session, join_session,
  leave_session, send_session_message, session_messages, close_session, session_status,
  list_sessions, request_assistance
- :mod:`~macp.gateway.ops.projects`: create_project, update_project, list_projects,
  project_status, create_goal, link_to_goal, update_goal, list_goals, goal_status
- :mod:`~macp.gateway.ops.delegation`: decompose_task, assign_subtasks, delegate_subtask,
  merge_results, task_tree, task_lineage
- :mod:`~macp.gateway.ops.views`: topology_shape, metrics_history (what the dashboard draws)
"""

from __future__ import annotations

from macp.gateway.ops import (
    agents,
    checks,
    delegation,
    evaluations,
    projects,
    sessions,
    state,
    swarms,
    system,
    tasks,
    views,
    workflows,
)
from macp.gateway.ops._table import OPERATIONS

__all__ = ["OPERATIONS"]

del (
    agents,
    checks,
    delegation,
    evaluations,
    projects,
    sessions,
    state,
    swarms,
    system,
    tasks,
    views,
    workflows,
)  # imported for the operations they add
