"""Workflow definitions: steps, their dependencies, checked when the workflow is defined.

A workflow is ``{name, description?, strategy?, max_concurrency?, merge?, steps: [...]}``; a
step is ``{id, description?, type, body?, depends_on?, capabilities? | role? | agent?,
timeout_s?, retries?, priority?, resources?, on_failure?}`` where ``on_failure`` is ``fail``
(the workflow fails), ``continue`` (its dependents run without its output) or
``fallback:STEP`` (the named step runs in its place, with the same inputs; a step named as a
fallback runs only as one).

A step without a ``body`` gets ``{"input": <the run's input>, "deps": {step: output}}``. A step
with a ``body`` gets it with templates filled in: a string ``"${input}"``, ``"${deps.STEP}"`` or
``"${deps.STEP.field.sub}"`` becomes that value; inside longer strings they are interpolated.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Final, Literal, Self, TypeAlias, get_args

from pydantic import AfterValidator, Field, model_validator

from macp.actors.coordinator.task import DEFAULTS
from macp.errors import ConfigError
from macp.schema import Location, Schema, check

__all__ = ["MERGES", "STRATEGIES", "Merge", "Step", "Strategy", "Workflow", "render"]

Strategy: TypeAlias = Literal["sequential", "parallel", "priority", "resource-aware", "adaptive"]
"""How a run dispatches its ready steps (:mod:`.strategy`)."""
Merge: TypeAlias = Literal["dict", "list", "union"]
"""How a run's result is made of its sink steps' outputs."""
STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)
MERGES: Final[tuple[str, ...]] = get_args(Merge)
_TEMPLATE: Final = re.compile(r"\$\{([A-Za-z0-9_.\-:]+)\}")


def _policy(value: str) -> str:
    if value in ("fail", "continue") or (value.startswith("fallback:") and len(value) > 9):  # noqa: PLR2004
        return value
    raise ValueError(f"must be fail, continue or fallback:STEP, not {value!r}")


_Text = Annotated[str, Field(min_length=1)]


def _templates(body: Any) -> Any:
    """Refuse a template that :func:`render` could not fill in (it would fail at every run)."""
    pending = [body]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            for match in _TEMPLATE.finditer(item):
                path = match.group(1)
                if path != "input" and not path.startswith(("input.", "deps.")):
                    raise ValueError(f"template ${{{path}}} must start with 'input' or 'deps.STEP'")
    return body


class Step(Schema):
    """One step of a workflow: a coordinator task, run once the steps it depends on end."""

    id: _Text = Field(description="The step's name, unique in its workflow.")
    description: str = ""
    type: _Text = Field(description="The task type, handled by the agent that runs the step.")
    body: Annotated[Any, AfterValidator(_templates)] = Field(
        default=None, description="The task's body, with ${input...}/${deps...} filled in."
    )
    depends_on: list[str] = Field(default_factory=list, description="Steps that run first.")
    capabilities: list[str] = Field(
        default_factory=list, description="Run on an agent with these capabilities."
    )
    role: str | None = Field(default=None, description="Run on an agent with this role.")
    agent: str | None = Field(
        default=None, description="Run on this agent (its address, NAME@NODE)."
    )
    timeout_s: Annotated[float, Field(strict=True, gt=0)] = Field(
        default=DEFAULTS.timeout_s, description="How long one attempt may take."
    )
    retries: Annotated[int, Field(strict=True, ge=0)] = Field(
        default=2, description="Attempts after the first one fails."
    )
    priority: Annotated[int, Field(strict=True, ge=0, le=3)] = Field(
        default=DEFAULTS.priority,
        description="0 (low) to 3 (critical); the priority strategy runs higher first.",
    )
    resources: dict[str, Annotated[float, Field(strict=True, gt=0)]] = Field(
        default_factory=dict, description="Pool amounts leased while it runs (resource-aware)."
    )
    on_failure: Annotated[str, AfterValidator(_policy)] = Field(
        default="fail", description="fail (the run fails), continue (dependents run without its "
        "output) or fallback:STEP (that step runs in its place).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if sum(1 for target in (self.capabilities, self.role, self.agent) if target) > 1:
            raise ValueError("give one of 'capabilities', 'role' or 'agent', not several")
        return self

    @property
    def fallback(self) -> str | None:
        return (
            self.on_failure.removeprefix("fallback:")
            if self.on_failure.startswith("fallback:")
            else None
        )

    def task_spec(self) -> dict[str, Any]:
        """The coordinator task for this step (without its body)."""
        return {
            "type": self.type, "capabilities": list(self.capabilities), "role": self.role,
            "agent": self.agent, "timeout_s": self.timeout_s, "max_retries": self.retries,
            "priority": self.priority,
        }  # fmt: skip


class Workflow(Schema):
    """A workflow definition: its fields checked by the model, its graph by :meth:`problems`."""

    name: _Text = Field(description="The name runs refer to.")
    description: str = ""
    strategy: Strategy = Field(
        default="parallel",
        description="How ready steps are dispatched (see macp.actors.coordinator.strategy).",
    )
    max_concurrency: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        default=None, description="The most steps running at once."
    )
    merge: Merge = Field(
        default="dict",
        description="The run's result: {sink: output}, [outputs] or their maps merged.",
    )
    steps: Annotated[list[Step], Field(min_length=1)]

    @classmethod
    def parse(cls, raw: Any) -> Workflow:
        """Check a definition.

        Raises:
            ConfigError: a malformed field, a duplicate step id, a dependency on a step that
                does not exist, a fallback to a step that does not exist, or a dependency
                cycle; the message names the workflow and the steps involved.
        """
        named = isinstance(raw, dict) and isinstance(raw.get("name"), str) and raw["name"]
        where = f"workflow {raw['name']!r}" if named else "a workflow"
        workflow = check(cls, raw, where, ConfigError)
        for _, message in workflow.problems()[:1]:
            raise ConfigError(f"{where}: {message}")
        return workflow

    def problems(self) -> list[tuple[Location, str]]:
        """What is wrong with the graph of steps: each with where (within this workflow)."""
        found: list[tuple[Location, str]] = []
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.id in seen:
                unique = f"two steps have the id {step.id!r}; step ids must be unique"
                found.append((("steps", i, "id"), unique))
            seen.add(step.id)
        for i, step in enumerate(self.steps):
            for j, dep in enumerate(step.depends_on):
                if dep not in seen:
                    missing = f"step {step.id!r} depends on {dep!r}, which is not a step"
                    found.append((("steps", i, "depends_on", j), missing))
            if step.fallback is not None and step.fallback not in seen:
                missing = f"step {step.id!r} falls back to {step.fallback!r}, which is not a step"
                found.append((("steps", i, "on_failure"), missing))
        if not found and (cycle := self._cycle()):
            found.append(((), f"the steps form a cycle: {' -> '.join(cycle)}"))
        return found

    def _cycle(self) -> list[str]:
        deps = {s.id: s.depends_on for s in self.steps}
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        path: list[str] = []

        def visit(node: str) -> list[str]:
            state[node] = 1
            path.append(node)
            for dep in deps[node]:
                if state.get(dep) == 1:
                    return [*path[path.index(dep) :], dep]
                if dep not in state and (found := visit(dep)):
                    return found
            state[node] = 2
            path.pop()
            return []

        for step in self.steps:
            if step.id not in state and (found := visit(step.id)):
                return found
        return []

    @functools.cached_property
    def fallbacks(self) -> frozenset[str]:
        """Steps that run only in place of a failed one."""
        return frozenset(s.fallback for s in self.steps if s.fallback is not None)

    @functools.cached_property
    def _by_id(self) -> dict[str, Step]:
        return {s.id: s for s in self.steps}

    def step(self, step_id: str) -> Step:
        return self._by_id[step_id]

    def order(self) -> list[str]:
        """A topological order (dependencies first; ties in definition order)."""
        return list(self._order)

    @functools.cached_property
    def _order(self) -> tuple[str, ...]:
        done: dict[str, None] = {}
        remaining = [s for s in self.steps if s.id not in self.fallbacks]
        while remaining:
            ready = next(s for s in remaining if all(d in done for d in s.depends_on))
            done[ready.id] = None
            remaining.remove(ready)
        return tuple(done)

    def sinks(self) -> list[str]:
        """Steps no other step depends on (fallbacks aside), in definition order."""
        needed = {d for s in self.steps for d in s.depends_on}
        return [s.id for s in self.steps if s.id not in needed and s.id not in self.fallbacks]

    def width(self) -> int:
        """The most steps that could run at once (steps at one depth of the graph)."""
        depth: dict[str, int] = {}
        for step_id in self.order():
            step = self.step(step_id)
            depth[step_id] = 1 + max((depth[d] for d in step.depends_on), default=0)
        return max((list(depth.values()).count(d) for d in set(depth.values())), default=1)


def _lookup(path: str, run_input: Any, deps: dict[str, Any]) -> Any:
    head, _, rest = path.partition(".")
    if head == "input":
        value = run_input
    elif head == "deps":
        step, _, rest = rest.partition(".")
        value = deps.get(step)
    else:
        raise ConfigError(f"template ${{{path}}} must start with 'input' or 'deps.STEP'")
    for part in rest.split(".") if rest else []:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def render(body: Any, run_input: Any, deps: dict[str, Any]) -> Any:
    """``body`` with its ``${...}`` templates filled in (see the module docstring)."""
    if isinstance(body, str):
        whole = _TEMPLATE.fullmatch(body)
        if whole:
            return _lookup(whole.group(1), run_input, deps)
        return _TEMPLATE.sub(lambda m: str(_lookup(m.group(1), run_input, deps)), body)
    if isinstance(body, dict):
        return {k: render(v, run_input, deps) for k, v in body.items()}
    if isinstance(body, list):
        return [render(v, run_input, deps) for v in body]
    return body
