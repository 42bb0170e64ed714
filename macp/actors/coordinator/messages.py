"""The coordinator's messages: their types, what each takes and what it answers.

Tasks (:mod:`.actor`): ``coordinator.submit`` a task spec -> ``{task_id, state, duplicate}``;
``coordinator.status`` ``{task_id}`` -> the task's record, its ``attempt_history``,
``wait_ms`` and ``run_ms`` (and its ``wait`` and ``wait_reason`` while it waits);
``coordinator.result`` ``{task_id}`` -> its result once it ends (or its error);
``coordinator.cancel`` ``{task_id}`` -> ``{cancelled, state}``; ``coordinator.tasks``
``{states?, type?, agent?, since_ms?, limit?}`` -> ``{tasks, total, counts}`` and
``coordinator.counts`` -> every task kept, counted by state, type and agent (:mod:`.history`).
A task's ``notify`` address is told ``task.done`` ``{task_id, state, result, error}`` when it
ends.

One to many: ``coordinator.scatter`` (:mod:`.scatter`), ``coordinator.control``
(:mod:`.commands`). The journal: ``coordinator.dead_letters`` (:mod:`.ledger`). Workflows
(:mod:`.engine`): ``workflow.define`` a definition (:mod:`.dag`) -> ``{name, steps}``;
``workflow.run`` ``{workflow | definition, input?, strategy?, max_concurrency?}`` ->
``{run_id}``; ``workflow.status``/``pause``/``resume``/``cancel``/``result`` ``{run_id}``;
``workflow.list``. A run's result is ``{sink step: output}`` (``merge: dict``), the list of sink
outputs (``list``), or their maps merged (``union``).

Trees of tasks (:mod:`.lineage`): ``coordinator.children`` ``{task_id}`` -> ``{task_id,
children: [task]}``; ``coordinator.lineage`` ``{task_id, limit?}`` -> ``{task, root, ancestors,
descendants, truncated, contributors: {agents, inputs}}``.

Task events (:mod:`.events`): ``tasks.subscribe`` ``{address, lease_s}`` -> ``{address,
lease_s}`` (again before the lease ends, to keep it); ``tasks.unsubscribe`` ``{address}`` ->
``{unsubscribed}``; ``tasks.subscribers`` -> ``[{address, lease_left_s}]``. A subscriber is
told ``task.event`` ``{task_id, state, previous, time_ms, type, attempt?, agent?, error?, run?,
step?}`` at each change of a task's state (``run``, ``step``: a workflow run's step).
"""

from __future__ import annotations

from typing import Final

from macp.actors.context import RESULT, STATUS, SUBMIT

__all__ = [
    "CANCEL", "CHILDREN", "CONTROL", "COUNTS", "DEAD_LETTERS", "HUB_DECOMPOSE", "HUB_MERGE",
    "LINEAGE", "RESULT", "SCATTER",
    "STATUS", "SUBMIT", "TASKS", "TASKS_SUBSCRIBE", "TASKS_SUBSCRIBERS", "TASKS_UNSUBSCRIBE",
    "TASK_DONE", "TASK_EVENT",
    "WORKFLOW_CANCEL", "WORKFLOW_DEFINE", "WORKFLOW_LIST", "WORKFLOW_PAUSE",
    "WORKFLOW_RESULT", "WORKFLOW_RESUME", "WORKFLOW_RUN", "WORKFLOW_STATUS",
]  # fmt: skip

CANCEL: Final = "coordinator.cancel"
TASKS: Final = "coordinator.tasks"
CHILDREN: Final = "coordinator.children"
LINEAGE: Final = "coordinator.lineage"
COUNTS: Final = "coordinator.counts"
HUB_DECOMPOSE: Final = "hub.decompose"
"""A hub's ``decompose`` hook, asked of the hub agent: a task's body -> its parts (nothing is
submitted); the delegation operations ask it (:class:`macp.Hub` answers it)."""
HUB_MERGE: Final = "hub.merge"
"""A hub's ``merge`` hook, asked of the hub agent: ``{results, body}`` -> the merged result."""
TASK_DONE: Final = "task.done"
SCATTER: Final = "coordinator.scatter"
CONTROL: Final = "coordinator.control"
DEAD_LETTERS: Final = "coordinator.dead_letters"
WORKFLOW_DEFINE: Final = "workflow.define"
WORKFLOW_RUN: Final = "workflow.run"
WORKFLOW_STATUS: Final = "workflow.status"
WORKFLOW_PAUSE: Final = "workflow.pause"
WORKFLOW_RESUME: Final = "workflow.resume"
WORKFLOW_CANCEL: Final = "workflow.cancel"
WORKFLOW_RESULT: Final = "workflow.result"
WORKFLOW_LIST: Final = "workflow.list"
TASKS_SUBSCRIBE: Final = "tasks.subscribe"
TASKS_UNSUBSCRIBE: Final = "tasks.unsubscribe"
TASKS_SUBSCRIBERS: Final = "tasks.subscribers"
TASK_EVENT: Final = "task.event"
