"""Agents that run on a model and report its figures (importable as ``model_agents:Name`` by
node processes, as tests/agents.py is)."""

from __future__ import annotations

from typing import Any

from macp import Agent, Context, handler


class Llm(Agent):
    """Runs on llm@2; each ``infer`` reports the figures its body gives."""

    model_type = "llm"
    model_version = "2"

    @handler("infer")
    def infer(self, body: dict[str, Any], ctx: Context) -> str:
        ctx.report(**body)
        return self.address


class Classifier(Agent):
    """Runs on clf@1."""

    model_type = "clf"
    model_version = "1"

    @handler("infer")
    def infer(self, body: dict[str, Any], ctx: Context) -> str:
        ctx.report(**body)
        return self.address


class Modelless(Agent):
    """Declares no model: its reports are refused."""

    @handler("infer")
    def infer(self, body: dict[str, Any], ctx: Context) -> str:
        ctx.report(**body)
        return self.address
