"""The coordinator: tasks, their routing, workflows and scatter-gather, on the head node.

Composed of parts, each a concept of its own, held by a thin actor:

- :mod:`.task`: the :class:`~.task.Task` record, its states and their legal transitions;
- :mod:`.table`: the task table (every task held and each change of state; no I/O);
- :mod:`.dispatch`: the dispatcher (routing, breakers, down nodes, what a failure costs);
- :mod:`.engine`: the workflow engine (definitions in :mod:`.dag`, strategies in
  :mod:`.strategy`, runs in :mod:`.run`);
- :mod:`.scatter` and :mod:`.gather`: scatter-gather and its aggregation;
- :mod:`.commands`: control commands to many agents;
- :mod:`.courier`: what is sent, and the outcomes handed back;
- :mod:`.ledger`: the journal (writes, replay with :mod:`.records`' checks, and
  :mod:`.retention`);
- :mod:`.flow`: the flow of tasks from submit to their end (outcomes, timeouts, retries);
- :mod:`.actor`: the :class:`Coordinator` actor that wires them;
- :mod:`.events`: task events, told to subscribers that hold a lease;
- :mod:`.messages`: the coordinator's messages.
"""

from __future__ import annotations

from macp.actors.coordinator.actor import Coordinator as Coordinator
from macp.actors.coordinator.dispatch import CoordinatorOptions as CoordinatorOptions
from macp.actors.coordinator.history import with_counts as with_counts
from macp.actors.coordinator.messages import CANCEL as CANCEL
from macp.actors.coordinator.messages import CONTROL as CONTROL
from macp.actors.coordinator.messages import COUNTS as COUNTS
from macp.actors.coordinator.messages import DEAD_LETTERS as DEAD_LETTERS
from macp.actors.coordinator.messages import RESULT as RESULT
from macp.actors.coordinator.messages import SCATTER as SCATTER
from macp.actors.coordinator.messages import STATUS as STATUS
from macp.actors.coordinator.messages import SUBMIT as SUBMIT
from macp.actors.coordinator.messages import TASK_DONE as TASK_DONE
from macp.actors.coordinator.messages import TASKS as TASKS
from macp.actors.coordinator.messages import TASKS_SUBSCRIBE as TASKS_SUBSCRIBE
from macp.actors.coordinator.messages import TASKS_SUBSCRIBERS as TASKS_SUBSCRIBERS
from macp.actors.coordinator.messages import TASKS_UNSUBSCRIBE as TASKS_UNSUBSCRIBE
from macp.actors.coordinator.messages import WORKFLOW_CANCEL as WORKFLOW_CANCEL
from macp.actors.coordinator.messages import WORKFLOW_DEFINE as WORKFLOW_DEFINE
from macp.actors.coordinator.messages import WORKFLOW_LIST as WORKFLOW_LIST
from macp.actors.coordinator.messages import WORKFLOW_PAUSE as WORKFLOW_PAUSE
from macp.actors.coordinator.messages import WORKFLOW_RESULT as WORKFLOW_RESULT
from macp.actors.coordinator.messages import WORKFLOW_RESUME as WORKFLOW_RESUME
from macp.actors.coordinator.messages import WORKFLOW_RUN as WORKFLOW_RUN
from macp.actors.coordinator.messages import WORKFLOW_STATUS as WORKFLOW_STATUS
from macp.actors.coordinator.retention import JournalRetention as JournalRetention
from macp.actors.coordinator.task import DEFAULTS as DEFAULTS

__all__ = [
    "CANCEL",
    "CONTROL",
    "COUNTS",
    "DEAD_LETTERS",
    "DEFAULTS",
    "RESULT",
    "SCATTER",
    "STATUS",
    "SUBMIT",
    "TASKS",
    "TASKS_SUBSCRIBE",
    "TASKS_SUBSCRIBERS",
    "TASKS_UNSUBSCRIBE",
    "TASK_DONE",
    "WORKFLOW_CANCEL",
    "WORKFLOW_DEFINE",
    "WORKFLOW_LIST",
    "WORKFLOW_PAUSE",
    "WORKFLOW_RESULT",
    "WORKFLOW_RESUME",
    "WORKFLOW_RUN",
    "WORKFLOW_STATUS",
    "Coordinator",
    "CoordinatorOptions",
    "JournalRetention",
    "with_counts",
]
