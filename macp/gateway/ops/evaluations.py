"""Evaluation and model operations: evaluate an agent's contribution, list evaluations, each
agent's performance score, and the figures and health of the models agents run on.

Evaluations are journaled by the head's evaluations actor (:mod:`macp.actors.evaluations`),
which derives each agent's ``performance_score`` (also in its registry record: ``agent_list``,
``find_agents``, ``agent_status``); model figures come from the agents' ``ctx.report`` through
the monitor (:mod:`macp.actors.model_metrics`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from macp.actors.evaluations import ADD, LIST_EVALUATIONS, SCORES_OF
from macp.actors.monitor import MODEL_HEALTH, MODEL_METRICS
from macp.gateway.ops._registry import address_of
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["AgentEvaluations", "EvaluateContribution", "ModelQuery", "PerformanceScores"]

Score = Annotated[float, Field(ge=0, le=1)]


class EvaluateContribution(Params):
    evaluator: str = Field(min_length=1)
    """Who evaluates: an agent's address, or any name (a person, a program)."""
    contributor: str | None = Field(None, min_length=1)
    """The agent evaluated (its address name@node, or its name); by default the agent that ran
    task_id."""
    task_id: str | None = Field(None, min_length=1)
    """The task whose result is evaluated."""
    result_ref: str | None = Field(None, min_length=1)
    """Any other reference to the result evaluated (a workflow run's step, a memory key);
    give it or task_id."""
    scores: dict[str, Score] = Field(min_length=1)
    """Each criterion's score, from 0 (worst) to 1 (best), e.g. {"accuracy": 0.9}."""
    comments: str = Field("", max_length=10_000)
    """Free text."""


class AgentEvaluations(Params):
    contributor: str | None = Field(None, min_length=1)
    """Only the evaluations of this agent (its address, or its name)."""
    task_id: str | None = Field(None, min_length=1)
    """Only the evaluations of this task's result."""
    limit: int = Field(100, ge=1, le=1000)
    """At most this many, newest first."""


class PerformanceScores(Params):
    """No parameters."""


class ModelQuery(Params):
    model: str | None = Field(None, min_length=1)
    """Only this model (type@version, or type when it has no version)."""


@OPERATIONS.operation(
    "evaluate_contribution", EvaluateContribution, Scope.TASKS_WRITE,
    "Evaluate an agent's contribution (a task's result, or another result) by criteria scored "
    "0 to 1: journaled, and counted in the agent's performance_score.",
)  # fmt: skip
async def evaluate_contribution(runtime: Runtime, p: EvaluateContribution) -> dict[str, Any]:
    body = p.model_dump(exclude_none=True)
    if p.contributor is not None:
        body["contributor"] = await address_of(runtime, p.contributor)
    return dict(await runtime.request("evaluations", ADD, body))


@OPERATIONS.operation(
    "agent_evaluations", AgentEvaluations, Scope.AGENTS_READ,
    "The newest evaluations, of one agent and/or about one task if given: evaluator, "
    "contributor, scores, mean score, comments, time.",
)  # fmt: skip
async def agent_evaluations(runtime: Runtime, p: AgentEvaluations) -> dict[str, Any]:
    body = p.model_dump(exclude_none=True)
    if p.contributor is not None:
        body["contributor"] = await address_of(runtime, p.contributor)
    return dict(await runtime.read("evaluations", LIST_EVALUATIONS, body))


@OPERATIONS.operation(
    "performance_scores", PerformanceScores, Scope.AGENTS_READ,
    "Every evaluated agent's performance_score (the mean of its evaluations' mean scores) "
    "and how many evaluations it has.",
)  # fmt: skip
async def performance_scores(runtime: Runtime, _p: PerformanceScores) -> dict[str, Any]:
    scores = await runtime.read("evaluations", SCORES_OF)
    return {"agents": scores, "count": len(scores)}


@OPERATIONS.operation(
    "model_metrics", ModelQuery, Scope.SYSTEM_READ,
    "Each model's figures from its agents' reports (counts, errors, error rate, inference "
    "p50/p95/p99, tokens in and out, rates), and each agent's.",
)  # fmt: skip
async def model_metrics(runtime: Runtime, p: ModelQuery) -> dict[str, Any]:
    figures = await runtime.read("monitor", MODEL_METRICS)
    models = {k: v for k, v in figures["models"].items() if p.model in (None, k)}
    agents = {k: v for k, v in figures["agents"].items()
              if p.model is None or p.model in v["models"]}  # fmt: skip
    return {"models": models, "agents": agents, "count": len(models)}


@OPERATIONS.operation(
    "model_health", ModelQuery, Scope.SYSTEM_READ,
    "Each model's health (healthy, degraded or failing, by error rate and p95 inference time "
    "over the monitor's window) and why.",
)  # fmt: skip
async def model_health(runtime: Runtime, p: ModelQuery) -> dict[str, Any]:
    models = await runtime.read("monitor", MODEL_HEALTH)
    shown = {k: v for k, v in models.items() if p.model in (None, k)}
    return {"models": shown, "count": len(shown)}
