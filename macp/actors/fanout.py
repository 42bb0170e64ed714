"""The coordinator's one-to-many work: scatter-gather tasks and control commands.

``coordinator.scatter`` ``{type, body, capabilities?, agents?, count?, aggregation, quorum?,
failure_threshold?, timeout_s?}`` -> ``{task_id}``: the task goes to every chosen agent at once
(the ``agents`` given, else the ``count`` least loaded routable agents with the capabilities,
else all of them); the answers are aggregated as :mod:`.gather` says, and the outcome is read
like any task's (``coordinator.result``). A scatter in flight when the coordinator restarts is
sent again.

``coordinator.control`` ``{command, target, params?}`` -> ``{address: {ok, result | error}}``:
a control command to one agent (an address or a name), a ``group:NAME``, a ``role:NAME``, or
``all``, with the answer of each. ``restart`` of a group restarts each of its agents on its
own (each by its own supervisor, at once, whatever is stuck); the coordinator does not restart
itself this way, since its answer would be lost with it.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from macp._storable import check as check_storable
from macp.actors.agent import TASK_RUN, handler
from macp.actors.gather import Gather, check_mode
from macp.actors.registry import CONTROL_PLANE, ROUTABLE
from macp.actors.routing import Outcome
from macp.actors.tasks import FINAL, error_record, new_record, requirement
from macp.commands import Command
from macp.envelope import Wire, new_id
from macp.errors import AgentError, InvalidParams, MacpError, ResourceUnavailable, error_body

if TYPE_CHECKING:
    from macp.actors.context import Context, Deferred, Reply
    from macp.actors.tasks import AgentView
    from macp.futures import AskFuture

__all__ = ["CONTROL", "SCATTER", "FanOut"]

SCATTER: Final = "coordinator.scatter"
CONTROL: Final = "coordinator.control"


class _Deadline(NamedTuple):
    task_id: str


class _ControlAnswer(NamedTuple):
    run_id: str
    address: str
    ok: bool
    value: Any


class FanOut:
    """The scatter-gather and control half of :class:`~macp.actors.coordinator.Coordinator`."""

    if TYPE_CHECKING:
        address: str
        agents: dict[str, AgentView]
        down_nodes: set[str]
        tasks: dict[str, dict[str, Any]]
        node: Any

        def _tell_self(self, message: Any) -> None: ...
        def _save(self, task: dict[str, Any]) -> None: ...
        def _finish(self, task: dict[str, Any], state: str, *, result: Any = ...,
                    error: BaseException | None = ...) -> None: ...  # fmt: skip
        def _wait_reason(self, task: dict[str, Any]) -> str: ...

        after_commit: list[Any]

    def _init_fanout(self) -> None:
        self.gathers: dict[str, Gather] = {}
        self.controls: dict[str, tuple[Deferred, dict[str, Any], int]] = {}

    def _on_fanout_message(self, message: Any) -> bool:
        if isinstance(message, _Deadline):
            self._scatter_deadline(message.task_id)
        elif isinstance(message, _ControlAnswer):
            self._control_answer(message)
        else:
            return False
        return True

    # -- scatter-gather -----------------------------------------------------------------------

    @handler(SCATTER)
    def scatter(self, body: Wire, ctx: Context) -> Reply:
        task = new_record(new_id(), body, kind="scatter")
        assert isinstance(body, dict)
        explicit = body.get("agents")
        if explicit is not None and (
            not isinstance(explicit, list) or not all(isinstance(a, str) for a in explicit)
        ):
            raise InvalidParams("scatter field 'agents' must be a list of addresses")
        check_mode(body.get("aggregation", "all"))  # before looking for voters
        task.update(
            aggregation=body.get("aggregation", "all"),
            quorum=body.get("quorum"),
            failure_threshold=body.get("failure_threshold"),
            expected=explicit or self._voters(task, body.get("count")),
        )
        if not task["expected"]:
            raise ResourceUnavailable(f"cannot scatter {task['type']!r}: {self._wait_reason(task)}")
        self._gather(task)  # validates the aggregation before anything is sent
        self.tasks[task["id"]] = task
        self._send_scatter(task)
        reply = ctx.defer()
        self.after_commit.append(
            partial(reply.resolve, {"task_id": task["id"], "state": "assigned"})
        )
        return reply

    def _voters(self, task: dict[str, Any], count: Any) -> list[str]:
        need = requirement(task)
        routable = sorted(
            (
                v
                for v in self.agents.values()
                if v.status in ROUTABLE and v.node not in self.down_nodes and v.meets(need)
            ),
            key=lambda v: (v.in_flight, v.address),
        )
        if count is not None and (not isinstance(count, int) or count < 1):
            raise InvalidParams("scatter field 'count' must be a positive integer")
        return [v.address for v in routable[:count]]

    def _gather(self, task: dict[str, Any]) -> Gather:
        gather = Gather(
            list(task["expected"]), task["aggregation"], task["quorum"], task["failure_threshold"]
        )
        self.gathers[task["id"]] = gather
        return gather

    def _send_scatter(self, task: dict[str, Any]) -> None:
        task.update(state="assigned", attempts=task["attempts"] + 1)
        self._save(task)
        self.after_commit.append(partial(self._ask_voters, task, task["attempts"]))

    def _ask_voters(self, task: dict[str, Any], attempt: int) -> None:
        """Once the attempt is journaled: send it to every voter, unless it is over."""
        if task["state"] in FINAL or task["attempts"] != attempt:
            return
        run = {"task_id": task["id"], "attempt": attempt, "type": task["type"],
               "body": task["body"]}  # fmt: skip
        for address in task["expected"]:
            try:
                future = self.node.ask(
                    address, TASK_RUN, run, timeout_s=task["timeout_s"], prio=task["priority"],
                    src=self.address,
                )  # fmt: skip
            except MacpError as e:
                self._scatter_answer(task, address, ok=False, value=e)
                continue
            future.add_done_callback(partial(self._scattered, task["id"], address))
        self.node.scheduler.call_later(task["timeout_s"], self._tell_self, _Deadline(task["id"]))

    def _scattered(self, task_id: str, address: str, future: AskFuture) -> None:
        error = future.exception()
        value = future.result() if error is None else error
        self._tell_self(Outcome(task_id, 0, address, ok=error is None, value=value))

    def _scatter_answer(self, task: dict[str, Any], agent: str, ok: bool, value: Any) -> None:
        gather = self.gathers.get(task["id"])
        if gather is None or task["state"] in FINAL:
            return
        if ok:
            try:  # an answer its agent's node did not check counts as that agent's failure
                check_storable(value, f"the answer of {agent} to scatter {task['id']}", "answer")
            except InvalidParams as e:
                ok, value = False, e
        decision = gather.add(agent, ok, value if ok else error_record(value))
        if decision is not None:
            self._decided(task, decision.ok, decision.result, decision.reason)

    def _scatter_deadline(self, task_id: str) -> None:
        task, gather = self.tasks.get(task_id), self.gathers.get(task_id)
        if task is not None and gather is not None and task["state"] not in FINAL:
            decision = gather.expire()
            self._decided(task, decision.ok, decision.result, decision.reason)

    def _decided(self, task: dict[str, Any], ok: bool, result: Any, reason: str) -> None:
        self.gathers.pop(task["id"], None)
        task["reason"] = reason
        if ok:
            self._finish(task, "succeeded", result=result)
        else:
            self._finish(task, "failed", error=AgentError(
                f"scatter {task['id']} ({task['aggregation']}) failed: {reason}",
                data={"answers": result},
            ))  # fmt: skip

    def _rerun_scatters(self) -> None:
        for task in self.tasks.values():
            if task["kind"] == "scatter" and task["state"] not in FINAL:
                self._gather(task)
                self._send_scatter(task)

    # -- control commands ---------------------------------------------------------------------

    @handler(CONTROL)
    def control_many(self, body: Wire, ctx: Context) -> Reply:
        if not isinstance(body, dict):
            raise InvalidParams("control needs a map with 'command' and 'target'")
        command, target = body.get("command"), body.get("target")
        try:
            Command(str(command))
        except ValueError:
            known = ", ".join(Command)
            raise InvalidParams(f"'command' must be one of {known}, not {command!r}") from None
        if not isinstance(target, str) or not target:
            raise InvalidParams(
                "'target' must be an address, a name, 'group:NAME', 'role:NAME' or 'all'"
            )
        addresses = self._targets(target)
        if not addresses:
            raise InvalidParams(f"no registered agent matches target {target!r}")
        if command == Command.RESTART and self.address in addresses:
            raise InvalidParams(
                f"the coordinator cannot restart itself ({self.address} is in {target!r}): the "
                "answer would be lost with it; send restart to it with Node.control instead"
            )
        run_id = new_id()
        reply = ctx.defer()
        self.controls[run_id] = (reply, {}, len(addresses))
        for address in addresses:
            try:
                future = self.node.control(address, str(command), body.get("params"))
            except MacpError as e:
                self._control_answer(_ControlAnswer(run_id, address, ok=False, value=e))
                continue
            future.add_done_callback(partial(self._controlled, run_id, address))
        return reply

    def _targets(self, target: str) -> list[str]:
        views = self.agents.values()
        if target == "all":  # every agent of the users: the control plane is not paused by it
            return sorted(v.address for v in views if v.group != CONTROL_PLANE)
        kind, _, value = target.partition(":")
        if kind == "group" and value:
            return sorted(v.address for v in views if v.group == value)
        if kind == "role" and value:
            return sorted(v.address for v in views if v.role == value)
        if "@" in target:
            return [target] if target in self.agents else []
        return sorted(v.address for v in views if v.address.partition("@")[0] == target)

    def _controlled(self, run_id: str, address: str, future: AskFuture) -> None:
        error = future.exception()
        value = future.result() if error is None else error
        self._tell_self(_ControlAnswer(run_id, address, ok=error is None, value=value))

    def _control_answer(self, answer: _ControlAnswer) -> None:
        entry = self.controls.get(answer.run_id)
        if entry is None:
            return
        reply, results, expected = entry
        results[answer.address] = (
            {"ok": True, "result": answer.value}
            if answer.ok
            else {"ok": False, "error": error_body(answer.value)}
        )
        if len(results) == expected:
            del self.controls[answer.run_id]
            reply.resolve(results)
