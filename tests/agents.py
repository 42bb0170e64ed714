"""Agents the tests run in node processes (importable as ``agents:Name`` there)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
from pathlib import Path
from typing import Any

import macp
from macp import Agent, Context, handler


class Echo(Agent):
    @handler("echo")
    def echo(self, body: macp.Wire, ctx: Context) -> macp.Wire:
        return {"echo": body, "sender": ctx.sender, "me": self.address}

    @handler("fail")
    def fail(self, body: macp.Wire) -> macp.Wire:
        raise ValueError(f"cannot handle {body!r}")

    @handler("refuse")
    def refuse(self, _body: macp.Wire) -> macp.Wire:
        raise macp.InvalidParams("text is required")

    @handler("hang")
    def hang(self, _body: macp.Wire) -> None:
        threading.Event().wait(60)  # never answers in time: for node-down tests


class CrashesOnRequest:
    """Mixed into an agent class (before it): ``crash`` raises, and the agent, declared
    ``crash_on_error``, dies for its supervisor to restart."""

    crash_on_error = True

    @handler("crash")
    def crash(self, _body: macp.Wire) -> None:
        raise RuntimeError("crashed on purpose")


class Relay(Agent):
    """Asks or tells other agents on request: drives agent-to-agent traffic across nodes."""

    @handler("relay")
    def relay(self, body: dict[str, Any]) -> macp.Wire:
        reply: macp.Wire = self.ask(body["to"], body["type"], body.get("body")).get()
        return reply

    @handler("blast")
    def blast(self, body: dict[str, Any]) -> int:
        for i in range(body["n"]):
            self.tell(body["to"], "seq", {"from": self.address, "i": i})
        return int(body["n"])


class Sequencer(Agent):
    """Counts ``seq`` messages per sender and whether each sender's arrived in order."""

    def on_start(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}

    @handler("seq")
    def seq(self, body: dict[str, Any], ctx: Context) -> None:
        sender = str(body.get("from", ctx.sender))
        record = self.seen.setdefault(sender, {"count": 0, "last": -1, "in_order": True})
        record["count"] += 1
        if body["i"] != record["last"] + 1:
            record["in_order"] = False
        record["last"] = body["i"]

    @handler("report")
    def report(self, _body: macp.Wire) -> macp.Wire:
        return {k: {"count": v["count"], "in_order": v["in_order"]} for k, v in self.seen.items()}


class Squarer(Agent):
    """A task handler with a capability and a role: squares ``body["x"]``."""

    capabilities = ("square",)
    role = "squarer"

    @handler("square")
    def square(self, body: dict[str, Any]) -> macp.Wire:
        return {"square": int(body["x"]) ** 2, "by": self.address}


class Cruncher(Agent):
    """Real work for fault tests: a few milliseconds of arithmetic per task."""

    capabilities = ("crunch",)

    @handler("crunch")
    def crunch(self, body: dict[str, Any]) -> macp.Wire:
        total = sum(i * i for i in range(int(body.get("n", 20_000))))
        return {"x": body["x"], "y": 2 * int(body["x"]), "check": total % 997, "by": self.address}


class Chainer(Agent):
    """A workflow step for fault tests: some arithmetic, then the names of the steps before it
    (from its dependencies' outputs, in order, each once) plus its own; logs ``chain.ran``."""

    capabilities = ("chain",)

    @handler("chain")
    def chain(self, body: dict[str, Any]) -> macp.Wire:
        total = sum(i * i for i in range(int(body.get("n", 20_000))))
        before = [step for output in body["deps"].values() for step in output["seen"]]
        seen = list(dict.fromkeys(before))  # a diamond's two branches share their ancestors
        self.log.info("chain.ran", step=body["step"])
        return {"seen": [*seen, body["step"]], "check": total % 997}


class Unloadable(Agent):
    """Cannot start: its ``on_start`` raises, as an agent whose model file is missing would."""

    def on_start(self) -> None:
        raise RuntimeError("cannot load its model")


class Opaque:
    """A user's own class: not msgpack-native."""


def build(recipe: Any) -> Any:
    """The Python value a recipe describes (recipes are msgpack-native, so they can be sent to
    agents anywhere; the values they build need not be): ``["v", x]`` is ``x``; ``["list", [r,
    ...]]``, ``["tuple", ...]``, ``["set", [...]]`` and ``["dict", [[key_r, value_r], ...]]``
    nest; ``["int", "123..."]`` is a big int; ``["datetime", epoch_s]``, ``["object"]``,
    ``["str", n]``, ``["bytes", n]`` and ``["bytearray", n]`` are what they say."""
    tag, *args = recipe
    made: Any
    if tag == "v":
        made = args[0]
    elif tag in {"list", "tuple", "set"}:
        items = [build(r) for r in args[0]]
        made = {"list": list, "tuple": tuple, "set": set}[tag](items)
    elif tag == "dict":
        made = {build(k): build(v) for k, v in args[0]}
    elif tag == "int":
        made = int(args[0])
    elif tag == "datetime":
        made = dt.datetime.fromtimestamp(args[0], tz=dt.UTC)
    elif tag == "object":
        made = Opaque()
    elif tag == "str":
        made = "x" * args[0]
    elif tag in {"bytes", "bytearray"}:
        made = (bytes if tag == "bytes" else bytearray)(args[0])
    else:
        raise macp.InvalidParams(f"unknown recipe tag {tag!r}")
    return made


class Returner(Agent):
    """Returns (or sends on) the value a recipe builds, whatever it is: for the payload rule."""

    @handler("give")
    def give(self, body: dict[str, Any]) -> Any:
        return build(body["recipe"])

    @handler("send")
    def send(self, body: dict[str, Any]) -> macp.Wire:
        """Ask ``body["to"]`` with the built value as the body; what that raised, by name."""
        try:
            self.ask(body["to"], "echo", build(body["recipe"])).get()
        except macp.MacpError as e:
            return {"error": type(e).__name__, "message": e.message}
        return {"error": None}


class Unstorable(Agent):
    """Answers ``unstorable`` with a set, which msgpack cannot carry (run it on a node with the
    strict setting off, so the value reaches the coordinator); ``echo`` answers normally."""

    @handler("unstorable")
    def unstorable(self, _body: macp.Wire) -> Any:
        return {"tags": {"a", "b"}}

    @handler("echo")
    def echo(self, body: macp.Wire) -> macp.Wire:
        return {"echo": body}


class OutputCloser(Agent):
    """Closes its process's standard output, then fails to start a moment later: a node whose
    output ends before the node does (``macp up`` must wait for the process, not the pipe)."""

    def on_start(self) -> None:
        os.close(1)
        threading.Event().wait(1.0)  # the node lingers on after its output is gone
        raise RuntimeError("cannot reach its model server")


class FirstAttemptHangs(Agent):
    """``stall``: the first attempt of a task never answers in time (so its node can be killed
    under it); a later attempt (``ctx.attempt`` > 1) answers at once."""

    capabilities = ("stall",)

    @handler("stall")
    def stall(self, body: macp.Wire, ctx: Context) -> macp.Wire:
        if ctx.attempt == 1:
            threading.Event().wait(60)
        return {"body": body, "attempt": ctx.attempt, "by": self.address}


class NodeKiller(Agent):
    """``die``: SIGKILLs its own node process, as a task that brings its node down would."""

    capabilities = ("die",)

    @handler("die")
    def die(self, _body: macp.Wire) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class Tally(Agent):
    """``tally``: a little arithmetic, then one file per attempt it completes, named
    ``TASK.ATTEMPT`` in ``body["dir"]`` and created exclusively (so an attempt recorded twice
    would raise): how a test counts, across node restarts, what the agents completed."""

    capabilities = ("tally",)

    @handler("tally")
    def tally(self, body: dict[str, Any], ctx: Context) -> macp.Wire:
        total = sum(i * i for i in range(int(body.get("n", 20_000))))
        path = Path(body["dir"]) / f"{ctx.task_id}.{ctx.attempt}"
        with path.open("x", encoding="utf-8") as done:
            done.write(self.address)
        return {"k": body["k"], "attempt": ctx.attempt, "check": total % 997, "by": self.address}


class FailsOnSecondAttempt(Agent):
    """``slow_then_flaky``: the first attempt takes 3 s (long enough to kill the head under
    it), the second raises, the third and later answer."""

    capabilities = ("slow_then_flaky",)

    @handler("slow_then_flaky")
    def run(self, body: macp.Wire, ctx: Context) -> macp.Wire:
        if ctx.attempt == 1:
            threading.Event().wait(3)
        elif ctx.attempt == 2:
            raise RuntimeError("the second attempt fails")
        return {"body": body, "attempt": ctx.attempt}


class Gate(Agent):
    """``wait_file`` finishes once ``body["path"]`` exists: a task a test lets finish from
    another process, whenever it chooses (bounded by ``body["within_s"]``, 30 s by default)."""

    capabilities = ("gate",)

    @handler("wait_file")
    def wait_file(self, body: dict[str, Any]) -> macp.Wire:
        path, wake = Path(body["path"]), threading.Event()
        for _ in range(int(float(body.get("within_s", 30)) / 0.01)):
            if path.exists():
                return {"opened": str(path), "by": self.address}
            wake.wait(0.01)
        raise macp.AskTimeout(f"{path} did not appear")


class Voter(Agent):
    """``vote``: the square of ``body["x"]`` and nothing else, so that voters agree."""

    capabilities = ("vote",)
    role = "voter"

    @handler("vote")
    def vote(self, body: dict[str, Any]) -> macp.Wire:
        return int(body["x"]) ** 2


class Dissenter(Agent):
    """``vote`` with another role: answers its own address, agreeing with nobody."""

    capabilities = ("vote",)
    role = "dissenter"

    @handler("vote")
    def vote(self, _body: macp.Wire) -> macp.Wire:
        return self.address


class Crew(Echo):
    """An Echo in group ``crew`` with role ``deckhand``: control commands by group and role."""

    group = "crew"
    role = "deckhand"
