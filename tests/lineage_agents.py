"""Agents that delegate, for the lineage tests (importable as ``lineage_agents:Name`` in node
processes, from tests/)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import macp
from macp import Agent, Context, Hub, handler
from macp.topologies.roles import Line

SPOKES = ("sq1@w1", "sq2@w2", "sq3@w2")
"""The squarers a :class:`Splitter` sends its parts to, in turn (on two nodes)."""


class Splitter(Hub):
    """A hub: ``{"items": [x, ...]}`` is one part ``{"x": x}`` per item, each squared by the
    next of :data:`SPOKES`; merged, the squares and their sum."""

    def on_start(self) -> None:
        self.config.setdefault("children", [{"type": "square", "agent": a} for a in SPOKES])

    def decompose(self, body: macp.Wire) -> list[macp.Wire]:
        assert isinstance(body, dict)
        return [{"x": x} for x in body["items"]]

    def merge(self, results: list[Any], body: macp.Wire) -> macp.Wire:
        squares = [r.get("square") for r in results]
        ok = [s for s in squares if s is not None]
        return {"squares": squares, "sum": sum(ok), "errors": [r for r in results if "error" in r],
                "of": body}  # fmt: skip


class Delegator(Agent):
    """``delegate``: submits each of ``body["children"]`` (``{type, body, ...spec}``) as a
    subtask through ``ctx.delegate``, then waits for each result in turn; with ``catch``, a
    child's error is put in the list as ``{"error": class name, "message"}`` instead of
    raised."""

    @handler("delegate")
    def delegate(self, body: dict[str, Any], ctx: Context) -> macp.Wire:
        subtasks = [
            ctx.delegate(child["type"], child.get("body"),
                         **{k: v for k, v in child.items() if k not in ("type", "body")})
            for child in body["children"]
        ]  # fmt: skip
        results: list[macp.Wire] = []
        for subtask in subtasks:
            try:
                results.append(subtask.result(timeout_s=30))
            except macp.MacpError as e:
                if not body.get("catch"):
                    raise
                results.append({"error": type(e).__name__, "message": e.message})
        return {"results": results, "children": [s.id for s in subtasks]}


class FailsFirst(Agent):
    """``flaky``: the first ``body["fail"]`` runs of a task (by id) raise; later ones answer
    with how many runs that task took."""

    capabilities = ("flaky",)

    def on_start(self) -> None:
        self.runs: Counter[str] = Counter()

    @handler("flaky")
    def flaky(self, body: dict[str, Any], ctx: Context) -> macp.Wire:
        self.runs[str(ctx.task_id)] += 1
        if self.runs[str(ctx.task_id)] <= body["fail"]:
            raise RuntimeError(f"run {self.runs[str(ctx.task_id)]} of {ctx.task_id} fails")
        return {"runs": self.runs[str(ctx.task_id)], "by": self.address}


class Waiter(Agent):
    """``wait_file`` answers once ``body["path"]`` exists (polled; bounded by ``within_s``, 30 s
    by default), and leaves a file ``<path>.<task id>.done`` behind: the test sees its handler
    ran to its end. Every 0.1 s it asks whether its task is still wanted (``ctx.is_cancelled``);
    once not, it stops and leaves ``<path>.<task id>.stopped`` instead."""

    capabilities = ("gate",)

    @handler("wait_file")
    def wait_file(self, body: dict[str, Any], ctx: Context) -> macp.Wire:
        path, wake = Path(body["path"]), threading.Event()
        for tick in range(int(float(body.get("within_s", 30)) / 0.01)):
            if path.exists():
                Path(f"{path}.{ctx.task_id}.done").write_text(self.address, encoding="utf-8")
                return {"opened": str(path), "by": self.address}
            if tick % 10 == 9 and ctx.is_cancelled():
                Path(f"{path}.{ctx.task_id}.stopped").write_text(self.address, encoding="utf-8")
                return {"stopped": True, "by": self.address}
            wake.wait(0.01)
        raise macp.AskTimeout(f"{path} did not appear")

    @handler("whoami")
    def whoami(self, _body: macp.Wire, ctx: Context) -> macp.Wire:
        """The task it runs, and the context the task was given."""
        return {"task_id": ctx.task_id, "context": ctx.context, "me": self.address}


class Belt(Line):
    """An assembly line of one stage: each item ``{"x": x}`` squared by any squarer."""

    def on_start(self) -> None:
        super().on_start()
        self.config.setdefault("stages", [{"type": "square", "capabilities": ["square"],
                                           "mode": "each", "max_in_flight": 3}])  # fmt: skip
