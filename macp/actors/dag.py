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
from dataclasses import dataclass, field
from typing import Any, Final

from macp.errors import ConfigError

__all__ = ["MERGES", "STRATEGIES", "Step", "Workflow", "render"]

STRATEGIES: Final = ("sequential", "parallel", "priority", "resource-aware", "adaptive")
MERGES: Final = ("dict", "list", "union")
_POLICIES: Final = ("fail", "continue")
_TEMPLATE: Final = re.compile(r"\$\{([A-Za-z0-9_.\-:]+)\}")
_STEP_KEYS: Final = frozenset({
    "id", "description", "type", "body", "depends_on", "capabilities", "role", "agent",
    "timeout_s", "retries", "priority", "resources", "on_failure",
})  # fmt: skip
_WORKFLOW_KEYS: Final = frozenset(
    {"name", "description", "strategy", "max_concurrency", "merge", "steps"}
)


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


@dataclass(frozen=True)
class Step:
    id: str
    type: str
    description: str = ""
    body: Any = None
    depends_on: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    role: str | None = None
    agent: str | None = None
    timeout_s: float = 30.0
    retries: int = 2
    priority: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    on_failure: str = "fail"

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


def _step(raw: Any, where: str) -> Step:  # noqa: C901 - one check per field, in order
    if not isinstance(raw, dict):
        raise _fail(where, "a step is a map with at least 'id' and 'type'")
    unknown = sorted(set(raw) - _STEP_KEYS)
    if unknown:
        raise _fail(
            where, f"unknown key {unknown[0]!r}; a step has {', '.join(sorted(_STEP_KEYS))}"
        )
    step_id, type_ = raw.get("id"), raw.get("type")
    if not isinstance(step_id, str) or not step_id:
        raise _fail(where, "'id' must be a non-empty string")
    where = f"{where} ({step_id!r})"
    if not isinstance(type_, str) or not type_:
        raise _fail(where, "'type' must be the task type its agent handles, e.g. 'summarize'")
    for key in ("depends_on", "capabilities"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(where, f"'{key}' must be a list of strings")
    if sum(1 for k in ("capabilities", "role", "agent") if raw.get(k)) > 1:
        raise _fail(where, "give one of 'capabilities', 'role' or 'agent', not several")
    policy = raw.get("on_failure", "fail")
    if not isinstance(policy, str) or not (policy in _POLICIES or policy.startswith("fallback:")):
        raise _fail(where, f"'on_failure' must be fail, continue or fallback:STEP, not {policy!r}")
    resources = raw.get("resources") or {}
    if not isinstance(resources, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in resources.values()
    ):
        raise _fail(where, "'resources' must map pool names to amounts > 0, e.g. {cpu: 1}")
    numbers = {"timeout_s": (float, 0.001), "retries": (int, 0), "priority": (int, 0)}
    values: dict[str, Any] = {}
    for key, (kind, minimum) in numbers.items():
        if key in raw:
            value = raw[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value < minimum
                or (kind is int and not isinstance(value, int))
            ):
                raise _fail(
                    where,
                    f"'{key}' must be {'an integer' if kind is int else 'a number'} >= {minimum}",
                )
            values[key] = value
    _check_templates(raw.get("body"), where)
    return Step(
        id=step_id, type=type_, description=str(raw.get("description", "")),
        body=raw.get("body"), depends_on=tuple(raw.get("depends_on", [])),
        capabilities=tuple(raw.get("capabilities", [])), role=raw.get("role"),
        agent=raw.get("agent"), resources=dict(resources), on_failure=policy, **values,
    )  # fmt: skip


def _check_templates(body: Any, where: str) -> None:
    """Refuse a template that :func:`render` could not fill in (it would fail at each run)."""
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
                    raise _fail(
                        where, f"template ${{{path}}} must start with 'input' or 'deps.STEP'"
                    )


@dataclass(frozen=True)
class Workflow:
    """A checked workflow definition."""

    name: str
    steps: tuple[Step, ...]
    description: str = ""
    strategy: str = "parallel"
    max_concurrency: int | None = None
    merge: str = "dict"

    @classmethod
    def parse(cls, raw: Any) -> Workflow:
        """Check a definition.

        Raises:
            ConfigError: a malformed field, a duplicate step id, a dependency on a step that
                does not exist, a fallback to a step that does not exist, or a dependency
                cycle; the message names the steps involved.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise ConfigError("a workflow is a map with a 'name' and a list of 'steps'")
        where = f"workflow {raw['name']!r}"
        unknown = sorted(set(raw) - _WORKFLOW_KEYS)
        if unknown:
            raise _fail(
                where,
                f"unknown key {unknown[0]!r}; a workflow has {', '.join(sorted(_WORKFLOW_KEYS))}",
            )
        steps_raw = raw.get("steps")
        if not isinstance(steps_raw, list) or not steps_raw:
            raise _fail(where, "'steps' must be a non-empty list")
        steps = tuple(_step(s, f"{where}, step {i + 1}") for i, s in enumerate(steps_raw))
        strategy = raw.get("strategy", "parallel")
        if strategy not in STRATEGIES:
            raise _fail(
                where, f"'strategy' must be one of {', '.join(STRATEGIES)}, not {strategy!r}"
            )
        merge = raw.get("merge", "dict")
        if merge not in MERGES:
            raise _fail(where, f"'merge' must be one of {', '.join(MERGES)}, not {merge!r}")
        limit = raw.get("max_concurrency")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise _fail(where, "'max_concurrency' must be an integer >= 1")
        workflow = cls(raw["name"], steps, str(raw.get("description", "")), strategy, limit, merge)
        workflow._check_graph(where)
        return workflow

    def _check_graph(self, where: str) -> None:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise _fail(where, f"two steps have the id {step.id!r}; step ids must be unique")
            seen.add(step.id)
        for step in self.steps:
            for dep in step.depends_on:
                if dep not in seen:
                    raise _fail(where, f"step {step.id!r} depends on {dep!r}, which is not a step")
            if step.fallback is not None and step.fallback not in seen:
                raise _fail(
                    where, f"step {step.id!r} falls back to {step.fallback!r}, which is not a step"
                )
        cycle = self._cycle()
        if cycle:
            raise _fail(where, f"the steps form a cycle: {' -> '.join(cycle)}")

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
