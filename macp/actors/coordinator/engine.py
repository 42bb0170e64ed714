"""The workflow engine: runs of workflow definitions, each step a coordinator task.

So retries, timeouts, failover and the journal hold for workflows as for any task. A run
dispatches its ready steps as their dependencies finish, by the run's strategy
(:mod:`.strategy`).

Its messages: :mod:`.messages`. A run is kept as the msgpack map the journal stores (:mod:`.run`:
its steps are written whole at each change, so a typed record would be built anew into a map
at every step, the cost ``bench`` W8 measures); its states and its steps' are enums, stored as
their values. The engine does no I/O: it is given a :class:`StepHost` (the coordinator's
:class:`~.flow.TaskFlow`) that starts and cancels step tasks, leases resources, and acts once a
change is journaled.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Final, Protocol

from macp._storable import scrub
from macp.actors.coordinator.dag import Workflow, render
from macp.actors.coordinator.run import (
    DEFINITION,
    RESOLVED,
    RUN_FINAL,
    RunState,
    StepState,
    merged,
    new_run,
    parse,
    requested,
)
from macp.actors.coordinator.strategy import adapt, lease_for, startable
from macp.actors.coordinator.task import error_record
from macp.envelope import Wire, now_ms
from macp.errors import (
    Cancelled,
    InternalError,
    MacpError,
    NotFound,
    ResourceUnavailable,
    error_body,
    error_from_body,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from macp.actors.context import Deferred
    from macp.actors.coordinator.agents import AgentView

__all__ = ["StepHost", "WorkflowEngine"]

_RUN, _STEP = RunState, StepState  # for the rarer ones
# The states' values, bound once: a run's record holds plain strings, compared step by step.
_WAITING: Final = StepState.WAITING.value
_READY: Final = StepState.READY.value
_STEP_RUNNING: Final = StepState.RUNNING.value
_STEP_SUCCEEDED: Final = StepState.SUCCEEDED.value
_STEP_FAILED: Final = StepState.FAILED.value
_REPLACED: Final = StepState.REPLACED.value
_UNFINISHED: Final = (_WAITING, _READY)
_UNSTARTED: Final = (_WAITING, _READY, StepState.STANDBY.value)
_RUN_RUNNING: Final = RunState.RUNNING.value
_PAUSED: Final = RunState.PAUSED.value
KEPT_RUNS: Final = 1_000
"""Finished runs kept in memory (the journal has the others)."""


class StepHost(Protocol):
    """What the engine asks of the coordinator's task flow (:class:`~.flow.TaskFlow`)."""

    def start_step(self, run_id: str, step_id: str, spec: dict[str, Any]) -> str:
        """Submit a step's task (queued for an agent); its id."""

    def cancel_step(self, task_id: str, run_id: str) -> None:
        """Cancel a step's task, if it has not finished, because its run ended."""

    def lease(self, owner: str, amounts: dict[str, float]) -> str:
        """Lease resources from the resource manager: the lease id (raises its refusal)."""

    def release(self, lease_id: str) -> None:
        """Give a lease back."""

    def later(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the changes made so far are journaled."""

    def agents(self) -> Iterable[AgentView]:
        """The agents as the dispatcher sees them (for the adaptive strategy)."""


class WorkflowEngine:
    """Workflow definitions and runs, advanced as their steps' tasks finish."""

    def __init__(
        self, host: StepHost, stored_run: Callable[[str], dict[str, Any] | None], log: Any
    ) -> None:
        self._host = host
        self._stored_run = stored_run  # a finished run no longer held, from the journal
        self._log = log
        self.definitions: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self._parsed: dict[str, Workflow] = {}
        self._waiters: dict[str, list[Deferred]] = {}
        self._changed: dict[str, dict[str, Any]] = {}
        self._finished: dict[str, None] = {}  # finished runs held, oldest end first
        self._seq = itertools.count(1)
        self.samples: list[dict[str, Any]] = []  # ended runs, for the monitor

    def _save(self, run: dict[str, Any]) -> None:
        run["updated_ms"] = now_ms()
        self._changed[run["id"]] = run

    # -- definitions and runs -----------------------------------------------------------------

    def define(self, body: Wire) -> Wire:
        workflow = parse(body)
        self.definitions[workflow.name] = dict(body)  # type: ignore[arg-type]
        record_id = f"{DEFINITION}:{workflow.name}"
        self._changed[record_id] = {"id": record_id, "state": DEFINITION, "name": workflow.name,
                                    "definition": body, "updated_ms": now_ms()}  # fmt: skip
        return {"name": workflow.name, "steps": [s.id for s in workflow.steps]}

    def start(self, body: Wire) -> str:
        """Start a run (``workflow.run``'s body); its id, answered once it is journaled."""
        workflow, definition, strategy = requested(body, self.definitions)
        assert isinstance(body, dict)
        limit = body.get("max_concurrency") or workflow.max_concurrency
        chosen = {"strategy": strategy, "reason": "requested"}
        if strategy == "adaptive":
            chosen, limit = adapt(workflow, self._host.agents(), limit)
        run = new_run(workflow, definition=definition, run_input=body.get("input"),
                      strategy=strategy, chosen=chosen, limit=limit)  # fmt: skip
        self._parsed[run["id"]] = workflow
        self.runs[run["id"]] = run
        self._advance(run)
        return str(run["id"])

    def run(self, body: Wire) -> dict[str, Any]:
        """The run ``body`` names (``{run_id}``), held or from the journal."""
        run_id = body.get("run_id") if isinstance(body, dict) else None
        run = self.runs.get(run_id) if isinstance(run_id, str) else None
        if run is None and isinstance(run_id, str):  # finished, and no longer kept in memory
            run = self._stored_run(run_id)
        if run is None:
            raise NotFound(
                f"no workflow run {run_id!r}; use the run_id workflow.run returned (a finished "
                "run is kept for the journal's retention: settings.journal_retention)"
            )
        return run

    def status(self, body: Wire) -> Wire:
        return {k: v for k, v in self.run(body).items() if k != "definition"}

    def result(self, body: Wire, reply: Callable[[], Deferred]) -> Wire | Deferred:
        """The run's outcome if it ended (its result, or its error raised); else ``reply()``,
        settled when it ends."""
        run = self.run(body)
        if run["state"] in RUN_FINAL:
            if run["state"] == _RUN.SUCCEEDED:
                return run["result"]  # type: ignore[no-any-return]
            raise error_from_body(run["error"])
        deferred = reply()
        self._waiters.setdefault(run["id"], []).append(deferred)
        return deferred

    def pause(self, body: Wire) -> Wire:
        run = self.run(body)
        if run["state"] == _RUN_RUNNING:
            run["state"] = _PAUSED
            self._save(run)
        return {"state": run["state"]}

    def resume_run(self, body: Wire) -> Wire:
        run = self.run(body)
        if run["state"] == _PAUSED:
            run["state"] = _RUN_RUNNING
            self._advance(run)
            self._save(run)
        return {"state": run["state"]}

    def cancel(self, body: Wire) -> Wire:
        run = self.run(body)
        if run["state"] in RUN_FINAL:
            return {"cancelled": False, "state": run["state"]}
        self.end(run, _RUN.CANCELLED, Cancelled(f"workflow run {run['id']} was cancelled"))
        return {"cancelled": True, "state": RunState.CANCELLED.value}

    def listing(self) -> Wire:
        """The defined workflows by name, and the runs held, newest first."""
        held = list(self.runs.values())  # in the order they were made: the last is the newest
        runs = [held[i] for i in sorted(range(len(held)), key=lambda i: (held[i]["created_ms"], i),
                                        reverse=True)]  # fmt: skip
        return {
            "definitions": sorted(self.definitions),
            "runs": [{k: r[k] for k in ("id", "workflow", "state", "created_ms")} for r in runs],
        }

    # -- running ------------------------------------------------------------------------------

    def _advance(self, run: dict[str, Any]) -> None:
        """Dispatch what the strategy allows; finish the run when nothing is left."""
        workflow, steps = self._parsed[run["id"]], run["steps"]
        for step_id in workflow.order():
            if steps[step_id]["state"] == _WAITING and all(
                steps[d]["state"] in RESOLVED for d in workflow.step(step_id).depends_on
            ):
                steps[step_id]["state"] = _READY
        if run["state"] != _RUN_RUNNING:
            self._save(run)
            return
        running, refused = self._start_ready(run, workflow)
        if run["state"] == _RUN_RUNNING and refused:  # its fallback or dependents may go on
            self._advance(run)
            return
        waiting = any(s["state"] in _UNFINISHED for s in steps.values())
        if run["state"] == _RUN_RUNNING and running == 0 and not waiting:
            run["result"] = merged(self._parsed[run["id"]], run)
            self.end(run, _RUN.SUCCEEDED, None)
        self._save(run)

    def _start_ready(self, run: dict[str, Any], workflow: Workflow) -> tuple[int, bool]:
        """Dispatch the ready steps the strategy allows; the steps running, and whether a step
        failed because its resources could never be granted."""
        steps = run["steps"]
        ready, limit = startable(run, workflow)
        running = sum(1 for s in steps.values() if s["state"] == _STEP_RUNNING)
        refused = False
        for step_id in ready:
            if running >= limit or run["state"] != _RUN_RUNNING:
                break
            step = workflow.step(step_id)
            if run["chosen"]["strategy"] == "resource-aware" and step.resources:
                try:
                    lease = lease_for(self._host, self._log, run["id"], step)
                except ResourceUnavailable as never:  # the step fails, saying why
                    run["steps"][step_id].update(finished_ms=now_ms(), error=error_body(never))
                    self._step_failed(run, step_id)
                    refused = True
                    continue
                if lease is None:
                    continue  # it waits for a release; another step may fit
                run["steps"][step_id]["lease"] = lease
            self._dispatch(run, step_id)
            running += 1
        return running, refused

    def _give_back(self, run: dict[str, Any], step_id: str) -> None:
        lease, run["steps"][step_id]["lease"] = run["steps"][step_id]["lease"], None
        if lease is not None:
            self._host.release(lease)

    def _dispatch(self, run: dict[str, Any], step_id: str) -> None:
        workflow, record = self._parsed[run["id"]], run["steps"][step_id]
        inputs_of = workflow.step(record["instead_of"] or step_id)  # a fallback: the failed one's
        deps = {d: run["steps"][d]["output"] for d in inputs_of.depends_on}
        own = workflow.step(step_id)
        body = (
            {"input": run["input"], "deps": deps}
            if own.body is None
            else render(own.body, run["input"], deps)
        )
        task_id = self._host.start_step(run["id"], step_id, {**own.task_spec(), "body": body})
        record.update(state=_STEP_RUNNING, task_id=task_id, dispatched=next(self._seq),
                      dispatched_ms=now_ms())  # fmt: skip

    def step_finished(
        self, run_id: str, step_id: str, state: str, result: Any, error: Wire
    ) -> bool:
        """A step's task ended (``state`` its final state); whether the run went on (so new
        step tasks may be queued)."""
        run = self.runs.get(run_id)
        if run is None:
            return False
        steps = run["steps"]
        record = steps[step_id]
        self._give_back(run, step_id)
        record.update(finished=next(self._seq), finished_ms=now_ms(), error=error)
        if run["state"] in RUN_FINAL:
            record["state"] = state
            self._save(run)
            return False
        if state == _STEP_SUCCEEDED:
            record.update(state=_STEP_SUCCEEDED, output=result)
            if record["instead_of"] is not None:  # a fallback: its output stands in
                steps[record["instead_of"]].update(state=_STEP_SUCCEEDED, output=result)
        else:
            self._step_failed(run, step_id)
        self._advance(run)
        return True

    def _step_failed(self, run: dict[str, Any], step_id: str) -> None:
        workflow, steps = self._parsed[run["id"]], run["steps"]
        steps[step_id]["state"] = _STEP_FAILED
        failed = steps[step_id]["instead_of"] or step_id
        step = workflow.step(failed)
        if step.on_failure == "continue":
            steps[failed]["state"] = _STEP_FAILED  # dependents run, with no output from it
        elif step.fallback is not None and steps[step_id]["instead_of"] is None:
            steps[failed]["state"] = _REPLACED
            steps[step.fallback].update(state=_READY, instead_of=failed)
        else:
            cause = error_from_body(steps[step_id]["error"])
            self.end(run, _RUN.FAILED, MacpError(
                f"workflow {run['workflow']!r} failed at step {failed!r}: {cause}",
                data={"step": failed, "error": steps[step_id]["error"]},
            ))  # fmt: skip

    def end(self, run: dict[str, Any], state: RunState, error: MacpError | None) -> None:
        """End ``run`` (unfinished): its running steps' tasks are cancelled unless it
        succeeded, and its other steps never start; its waiters are answered once journaled."""
        run.update(state=state.value, finished_ms=now_ms(),
                   error=error_record(error) if error else None)  # fmt: skip
        self.samples.append({"workflow": run["workflow"], "ok": state is _RUN.SUCCEEDED,
                             "duration_ms": run["finished_ms"] - run["created_ms"]})  # fmt: skip
        for step_id, record in run["steps"].items():
            if record["state"] == _STEP_RUNNING and state is not _RUN.SUCCEEDED:
                self._host.cancel_step(record["task_id"], run["id"])
                self._give_back(run, step_id)
            elif record["state"] in _UNSTARTED:
                done = _STEP.SKIPPED if state is _RUN.SUCCEEDED else _STEP.CANCELLED
                record["state"] = done.value
        self._save(run)
        waiters = self._waiters.pop(run["id"], [])

        def announce() -> None:
            for waiter in waiters:
                if error is None:
                    waiter.resolve(run["result"])
                else:
                    waiter.fail(error)

        self._host.later(announce)

    # -- the journal's side -------------------------------------------------------------------

    def load_definition(self, name: str, definition: dict[str, Any]) -> None:
        self.definitions[name] = definition

    def load_run(self, run: dict[str, Any]) -> None:
        """Hold a run read from the journal."""
        self.runs[run["id"]] = run
        if run["state"] in RUN_FINAL:
            self._finished[run["id"]] = None

    def recover(self, run_id: str, has_task: Callable[[str], bool]) -> None:
        """Go on with a run read from the journal, unfinished: a running step whose task is
        not held (``has_task``: it was set aside) fails, and its run goes on by its policy."""
        run = self.runs[run_id]
        self._parsed[run_id] = Workflow.parse(run["definition"])
        for step_id, step in run["steps"].items():
            if step["state"] == _STEP_RUNNING and not has_task(step["task_id"]):
                error = InternalError(
                    f"the task {step['task_id']} of step {step_id!r} could not be replayed "
                    "from the journal (see the dead letters)"
                )
                step.update(error=error_record(error), finished_ms=now_ms())
                if run["state"] in RUN_FINAL:
                    break
                self._step_failed(run, step_id)
        self._advance(run)

    def drop(self, run_id: str) -> None:
        """Forget a run that cannot go on (the journal sets it aside)."""
        self.runs.pop(run_id, None)
        self._parsed.pop(run_id, None)
        self._changed.pop(run_id, None)

    def changed(self) -> dict[str, dict[str, Any]]:
        """The runs and definitions changed since the last call (to be written)."""
        changed, self._changed = self._changed, {}
        for record_id, record in changed.items():
            if record["state"] in RUN_FINAL:
                self._finished[record_id] = None
        return changed

    def take_samples(self) -> list[dict[str, Any]]:
        """The runs ended since the last call, for the monitor."""
        samples, self.samples = self.samples, []
        return samples

    def refused(self, run: dict[str, Any], error: MacpError) -> None:
        """The journal refused ``run``'s record: the parts it cannot store become null, and
        the run fails with the reason (stored at the next flush)."""
        for name, value in list(run.items()):
            run[name] = scrub(value)
        if run["state"] not in RUN_FINAL:
            self.end(run, _RUN.FAILED, error)
        else:
            run.update(state=RunState.FAILED.value, error=error_record(error))
            self._save(run)

    def forget_old(self) -> None:
        """Hold at most :data:`KEPT_RUNS` finished runs (the journal has the others)."""
        while len(self._finished) > KEPT_RUNS:
            self.forget(next(iter(self._finished)))

    def forget(self, run_id: str) -> None:
        if run_id in self._changed:
            return
        self._finished.pop(run_id, None)
        self.runs.pop(run_id, None)
        self._parsed.pop(run_id, None)
