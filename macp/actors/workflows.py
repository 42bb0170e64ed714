"""The workflow engine, inside the coordinator: each step is a coordinator task.

So retries, timeouts, failover and the journal hold for workflows as for any task. A run
dispatches its ready steps as their dependencies finish, by the run's strategy:

- ``sequential``: one step at a time, in topological order;
- ``parallel``: every ready step at once, at most ``max_concurrency`` running;
- ``priority``: ready steps by step priority (ties in topological order), same bound;
- ``resource-aware``: a step that declares ``resources`` starts only once the resource
  manager grants them all, and gives them back when it ends;
- ``adaptive``: one of the above, chosen at the start from the run's shape and the free agents;
  the choice and its reason are recorded in the run.

Messages: ``workflow.define`` (a definition, see :mod:`.dag`), ``workflow.run``
``{workflow | definition, input?, strategy?, max_concurrency?}`` -> ``{run_id}``,
``workflow.status``/``pause``/``resume``/``cancel``/``result`` ``{run_id}``, ``workflow.list``.
A run's result is ``{sink step: output}`` (``merge: dict``), the list of sink outputs
(``list``), or their maps merged (``union``).
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from macp._storable import check as check_storable
from macp.actors.adaptive import adapt
from macp.actors.agent import handler
from macp.actors.dag import STRATEGIES, Step, Workflow, render
from macp.actors.records import DEFINITION
from macp.actors.tasks import error_record, new_record
from macp.envelope import Wire, new_id, now_ms
from macp.errors import (
    Cancelled,
    ConfigError,
    InsufficientResources,
    InvalidParams,
    MacpError,
    ResourceUnavailable,
    error_body,
    error_from_body,
)

if TYPE_CHECKING:
    from macp.actors.context import Context, Deferred, Reply
    from macp.actors.tasks import AgentView

__all__ = ["CANCEL", "DEFINE", "LIST", "PAUSE", "RESULT", "RESUME", "RUN", "STATUS", "Workflows"]

DEFINE: Final = "workflow.define"
RUN: Final = "workflow.run"
STATUS: Final = "workflow.status"
PAUSE: Final = "workflow.pause"
RESUME: Final = "workflow.resume"
CANCEL: Final = "workflow.cancel"
RESULT: Final = "workflow.result"
LIST: Final = "workflow.list"
_FINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
_RESOLVED: Final = frozenset({"succeeded", "failed", "skipped"})  # dependents may go on


class Workflows:
    """The workflow half of :class:`~macp.actors.coordinator.Coordinator`."""

    if TYPE_CHECKING:
        node: Any
        journal: Any
        tasks: dict[str, dict[str, Any]]
        agents: dict[str, AgentView]
        after_commit: list[Any]
        samples: dict[str, list[dict[str, Any]]]
        log: Any

        def _save(self, task: dict[str, Any]) -> None: ...
        def _stored_run(self, run_id: str) -> dict[str, Any] | None: ...
        def _enqueue(self, task: dict[str, Any]) -> None: ...
        def _pump(self) -> None: ...
        def _finish(self, task: dict[str, Any], state: str, *, result: Any = ...,
                    error: BaseException | None = ...) -> None: ...  # fmt: skip

    def _init_workflows(self) -> None:
        self.definitions: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.parsed: dict[str, Workflow] = {}
        self.run_waiters: dict[str, list[Deferred]] = {}
        self.dirty_runs: dict[str, dict[str, Any]] = {}
        self.step_seq = itertools.count(1)  # the journal's runs are loaded by the coordinator

    def _save_run(self, run: dict[str, Any]) -> None:
        run["updated_ms"] = now_ms()
        self.dirty_runs[run["id"]] = run

    # -- the API ------------------------------------------------------------------------------

    @handler(DEFINE)
    def define(self, body: Wire) -> Wire:
        workflow = self._parse(body)
        self.definitions[workflow.name] = dict(body)  # type: ignore[arg-type]
        record_id = f"{DEFINITION}:{workflow.name}"
        self.dirty_runs[record_id] = {"id": record_id, "state": DEFINITION, "name": workflow.name,
                                      "definition": body, "updated_ms": now_ms()}  # fmt: skip
        return {"name": workflow.name, "steps": [s.id for s in workflow.steps]}

    def _parse(self, definition: Wire) -> Workflow:
        check_storable(
            definition, "the workflow definition", "definition"
        )  # first: any data at all
        try:
            return Workflow.parse(definition)
        except ConfigError as e:
            raise InvalidParams(e.message) from e

    @handler(RUN)
    def run(self, body: Wire, ctx: Context) -> Reply:
        if not isinstance(body, dict):
            raise InvalidParams("workflow.run needs a map with 'workflow' (a name) or 'definition'")
        definition = body.get("definition")
        if definition is None:
            name = body.get("workflow")
            if not isinstance(name, str) or name not in self.definitions:
                known = ", ".join(sorted(self.definitions)) or "none"
                raise InvalidParams(f"no workflow {name!r:.60} is defined (defined: {known})")
            definition = self.definitions[name]
        workflow = self._parse(definition)
        strategy = body.get("strategy") or workflow.strategy
        if strategy not in STRATEGIES:
            raise InvalidParams(f"'strategy' {strategy!r:.60} is not a pipeline strategy")
        limit = body.get("max_concurrency")
        if limit is not None and (type(limit) is not int or limit < 1):
            raise InvalidParams(f"'max_concurrency' must be an integer >= 1, not {limit!r:.60}")
        check_storable(body.get("input"), "workflow.run field 'input'", "input")
        run = self._new_run(workflow, definition, body, strategy)
        self.parsed[run["id"]] = workflow
        self.runs[run["id"]] = run
        self._advance(run)
        reply = ctx.defer()
        self.after_commit.append(partial(reply.resolve, {"run_id": run["id"]}))
        return reply

    def _new_run(
        self, workflow: Workflow, definition: Any, body: dict[str, Any], strategy: str
    ) -> dict[str, Any]:
        limit = body.get("max_concurrency") or workflow.max_concurrency
        chosen = {"strategy": strategy, "reason": "requested"}
        if strategy == "adaptive":
            chosen, limit = adapt(workflow, self.agents.values(), limit)
        now = now_ms()
        return {
            "id": new_id(), "workflow": workflow.name, "definition": definition,
            "input": body.get("input"), "strategy": strategy, "chosen": chosen,
            "max_concurrency": limit, "state": "running", "result": None, "error": None,
            "created_ms": now, "finished_ms": None, "updated_ms": now,
            "steps": {s.id: {"state": "standby" if s.id in workflow.fallbacks else "waiting",
                             "task_id": None, "output": None, "error": None,
                             "dispatched": None, "finished": None, "lease": None,
                             "instead_of": None} for s in workflow.steps},
        }  # fmt: skip

    @handler(STATUS)
    def run_status(self, body: Wire) -> Wire:
        run = self._run(body)
        return {k: v for k, v in run.items() if k != "definition"}

    @handler(RESULT)
    def run_result(self, body: Wire, ctx: Context) -> Reply:
        run = self._run(body)
        if run["state"] in _FINAL:
            return self._outcome(run)
        reply = ctx.defer()
        self.run_waiters.setdefault(run["id"], []).append(reply)
        return reply

    @handler(PAUSE)
    def pause_run(self, body: Wire) -> Wire:
        run = self._run(body)
        if run["state"] == "running":
            run["state"] = "paused"
            self._save_run(run)
        return {"state": run["state"]}

    @handler(RESUME)
    def resume_run(self, body: Wire) -> Wire:
        run = self._run(body)
        if run["state"] == "paused":
            run["state"] = "running"
            self._advance(run)
            self._save_run(run)
        return {"state": run["state"]}

    @handler(CANCEL)
    def cancel_run(self, body: Wire) -> Wire:
        run = self._run(body)
        if run["state"] in _FINAL:
            return {"cancelled": False, "state": run["state"]}
        self._end_run(run, "cancelled", Cancelled(f"workflow run {run['id']} was cancelled"))
        return {"cancelled": True, "state": "cancelled"}

    @handler(LIST)
    def list_runs(self, _body: Wire) -> Wire:
        return {
            "definitions": sorted(self.definitions),
            "runs": [{k: r[k] for k in ("id", "workflow", "state", "created_ms")}
                     for r in self.runs.values()],
        }  # fmt: skip

    def _run(self, body: Wire) -> dict[str, Any]:
        run_id = body.get("run_id") if isinstance(body, dict) else None
        run = self.runs.get(run_id) if isinstance(run_id, str) else None
        if run is None and isinstance(run_id, str):  # finished, and no longer kept in memory
            run = self._stored_run(run_id)
        if run is None:
            raise InvalidParams(
                f"no workflow run {run_id!r}; use the run_id workflow.run returned (a finished "
                "run is kept for the journal's retention: settings.journal_retention)"
            )
        return run

    def _outcome(self, run: dict[str, Any]) -> Wire:
        if run["state"] == "succeeded":
            return run["result"]  # type: ignore[no-any-return]
        raise error_from_body(run["error"])

    # -- running ------------------------------------------------------------------------------

    def _advance(self, run: dict[str, Any]) -> None:
        """Dispatch what the strategy allows; finish the run when nothing is left."""
        workflow, steps = self.parsed[run["id"]], run["steps"]
        order = workflow.order()
        for step_id in order:
            if steps[step_id]["state"] == "waiting" and all(
                steps[d]["state"] in _RESOLVED for d in workflow.step(step_id).depends_on
            ):
                steps[step_id]["state"] = "ready"
        if run["state"] != "running":
            self._save_run(run)
            return
        running, refused = self._start_ready(run, workflow)
        if run["state"] == "running" and refused:  # its fallback or dependents may go on
            self._advance(run)
            return
        waiting = any(s["state"] in ("waiting", "ready") for s in steps.values())
        if run["state"] == "running" and running == 0 and not waiting:
            self._complete(run)
        self._save_run(run)

    def _start_ready(self, run: dict[str, Any], workflow: Workflow) -> tuple[int, bool]:
        """Dispatch the ready steps the strategy allows; the steps running, and whether a step
        failed because its resources could never be granted."""
        steps, strategy = run["steps"], run["chosen"]["strategy"]
        limit = 1 if strategy == "sequential" else run["max_concurrency"] or len(steps)
        ready = [
            s for s in [*workflow.order(), *workflow.fallbacks] if steps[s]["state"] == "ready"
        ]
        if strategy == "priority":
            ready.sort(key=lambda s: -workflow.step(s).priority)
        running = sum(1 for s in steps.values() if s["state"] == "running")
        refused = False
        for step_id in ready:
            if running >= limit or run["state"] != "running":
                break
            if strategy == "resource-aware":
                granted = self._lease(run, workflow.step(step_id))
                refused |= granted is None
                if not granted:
                    continue  # it waits for the resources (or failed); another step may fit
            self._dispatch(run, step_id)
            running += 1
        return running, refused

    def _lease(self, run: dict[str, Any], step: Step) -> bool | None:
        """Lease the step's resources: whether they were granted, or None if they never could
        be (a pool that does not exist, or is too small): then the step failed, saying why."""
        if not step.resources:
            return True
        owner = f"workflow:{run['id']}:{step.id}"
        body = {"owner": owner, "amounts": step.resources}
        try:
            lease = self.node.ask(f"resources@{self.node.name}", "resources.allocate", body).get()
        except InsufficientResources as e:
            never = e.data.get("never") if isinstance(e.data, dict) else None
            if not isinstance(never, dict) or not never:
                return False  # it waits for a release
            reasons = ", ".join(str(reason) for reason in never.values())
            refused = ResourceUnavailable(
                f"step {step.id!r} can never get its resources: {reasons}; declare the pool or "
                "lower the amount"
            )
            run["steps"][step.id].update(finished_ms=now_ms(), error=error_body(refused))
            self._step_failed(run, step.id)
            return None
        except MacpError as e:
            self.log.warning("workflow.lease_failed", run=run["id"], step=step.id, error=str(e))
            return False
        run["steps"][step.id]["lease"] = lease["lease_id"]
        return True

    def _give_back(self, run: dict[str, Any], step_id: str) -> None:
        lease, run["steps"][step_id]["lease"] = run["steps"][step_id]["lease"], None
        if lease is not None:
            self.node.tell(f"resources@{self.node.name}", "resources.release", {"lease_id": lease})

    def _dispatch(self, run: dict[str, Any], step_id: str) -> None:
        workflow, record = self.parsed[run["id"]], run["steps"][step_id]
        inputs_of = workflow.step(record["instead_of"] or step_id)  # a fallback: the failed one's
        deps = {d: run["steps"][d]["output"] for d in inputs_of.depends_on}
        own = workflow.step(step_id)
        body = (
            {"input": run["input"], "deps": deps}
            if own.body is None
            else render(own.body, run["input"], deps)
        )
        task = new_record(new_id(), {**own.task_spec(), "body": body})
        task.update(workflow=run["id"], step=step_id)
        self.tasks[task["id"]] = task
        self._save(task)
        self._enqueue(task)
        record.update(state="running", task_id=task["id"], dispatched=next(self.step_seq),
                      dispatched_ms=now_ms())  # fmt: skip

    def _step_finished(self, task: dict[str, Any]) -> None:
        """A step's task ended (called by the coordinator as it finishes a task)."""
        run = self.runs.get(task["workflow"])
        if run is None:
            return
        step_id, steps = task["step"], run["steps"]
        record = steps[step_id]
        self._give_back(run, step_id)
        record.update(finished=next(self.step_seq), finished_ms=now_ms(), error=task["error"])
        if run["state"] in _FINAL:
            record["state"] = task["state"]
            self._save_run(run)
            return
        if task["state"] == "succeeded":
            record.update(state="succeeded", output=task["result"])
            if record["instead_of"] is not None:  # a fallback: its output stands in
                steps[record["instead_of"]].update(state="succeeded", output=task["result"])
        else:
            self._step_failed(run, step_id)
        self._advance(run)
        self._pump()

    def _step_failed(self, run: dict[str, Any], step_id: str) -> None:
        workflow, steps = self.parsed[run["id"]], run["steps"]
        steps[step_id]["state"] = "failed"
        failed = steps[step_id]["instead_of"] or step_id
        step = workflow.step(failed)
        if step.on_failure == "continue":
            steps[failed]["state"] = "failed"  # dependents run, with no output from it
        elif step.fallback is not None and steps[step_id]["instead_of"] is None:
            steps[failed]["state"] = "replaced"
            steps[step.fallback].update(state="ready", instead_of=failed)
        else:
            cause = error_from_body(steps[step_id]["error"])
            self._end_run(run, "failed", MacpError(
                f"workflow {run['workflow']!r} failed at step {failed!r}: {cause}",
                data={"step": failed, "error": steps[step_id]["error"]},
            ))  # fmt: skip

    def _complete(self, run: dict[str, Any]) -> None:
        workflow = self.parsed[run["id"]]
        outputs = {s: run["steps"][s]["output"] for s in workflow.sinks()}
        if workflow.merge == "list":
            result: Any = list(outputs.values())
        elif workflow.merge == "union":
            result = {
                k: v for out in outputs.values() if isinstance(out, dict) for k, v in out.items()
            }
        else:
            result = outputs
        run.update(result=result)
        self._end_run(run, "succeeded", None)

    def _end_run(self, run: dict[str, Any], state: str, error: MacpError | None) -> None:
        run.update(state=state, finished_ms=now_ms(), error=error_record(error) if error else None)
        duration_ms = run["finished_ms"] - run["created_ms"]
        sample = {
            "workflow": run["workflow"],
            "ok": state == "succeeded",
            "duration_ms": duration_ms,
        }
        self.samples["workflows"].append(sample)
        for step_id, record in run["steps"].items():
            if record["state"] == "running" and state != "succeeded":
                task = self.tasks.get(record["task_id"])
                if task is not None and task["state"] not in _FINAL:
                    self._finish(task, "cancelled", error=Cancelled(f"run {run['id']} ended"))
                self._give_back(run, step_id)
            elif record["state"] in ("waiting", "ready", "standby"):
                record["state"] = "skipped" if state == "succeeded" else "cancelled"
        self._save_run(run)
        waiters = self.run_waiters.pop(run["id"], [])

        def announce() -> None:
            for waiter in waiters:
                if error is None:
                    waiter.resolve(run["result"])
                else:
                    waiter.fail(error)

        self.after_commit.append(announce)
