"""The part of :class:`~macp.cluster.Cluster` about how agents do: evaluations of their
contributions and the scores derived from them, and the figures of the models they run on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.evaluations import ADD, LIST_EVALUATIONS, SCORES_OF
from macp.actors.monitor import MODEL_HEALTH, MODEL_METRICS
from macp.cluster._asks import Asks

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.envelope import Wire

__all__ = ["Evaluating"]


class Evaluating(Asks):
    """Evaluations and model figures, for a class that asks the control plane (``_ask``, and
    ``_read`` for an ask safe to send again)."""

    def evaluate(
        self,
        evaluator: str,
        scores: Mapping[str, float],
        *,
        contributor: str | None = None,
        task_id: str | None = None,
        result_ref: str | None = None,
        comments: str = "",
    ) -> dict[str, Any]:
        """Evaluate a contribution: journaled, and counted in the contributor's
        ``performance_score`` (the mean of its evaluations' mean scores).

        Args:
            evaluator: who evaluates (an agent's address, or any name).
            scores: each criterion's score, a number from 0 (worst) to 1 (best).
            contributor: the agent evaluated (``name@node``); by default the agent that ran
                ``task_id``.
            task_id: the task whose result is evaluated.
            result_ref: any other reference to the result evaluated (a run's step, a key).
            comments: free text.

        Returns:
            The evaluation stored (``id``, ``time_ms``, ``score``: its mean, ...) with the
            contributor's ``performance_score`` and count of ``evaluations`` after it.

        Raises:
            InvalidParams: a field is missing or malformed (a score outside 0..1, ...).
            NotFound: no such task, or no such agent registered.
        """
        body: dict[str, Wire] = {"evaluator": evaluator, "scores": dict(scores),
                                 "comments": comments}  # fmt: skip
        given = {"contributor": contributor, "task_id": task_id, "result_ref": result_ref}
        body.update({k: v for k, v in given.items() if v is not None})
        return dict(self._ask("evaluations", ADD, body))

    evaluate_contribution = evaluate  # the gateway operation's name

    def evaluations(
        self, *, contributor: str | None = None, task_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` evaluations, newest first: of ``contributor`` and/or about
        ``task_id`` if given."""
        body: dict[str, Wire] = {"limit": limit}
        body.update({k: v for k, v in (("contributor", contributor), ("task_id", task_id)) if v})
        return list(self._read("evaluations", LIST_EVALUATIONS, body)["evaluations"])

    agent_evaluations = evaluations  # the gateway operation's name

    def performance_scores(self) -> dict[str, dict[str, Any]]:
        """``{address: {"performance_score", "evaluations"}}`` of every evaluated agent."""
        return dict(self._read("evaluations", SCORES_OF))

    def model_metrics(self) -> dict[str, Any]:
        """The figures of the agents' ``ctx.report``, per model and per agent:
        ``{"models": {model: {reports, errors, error_rate, inference_p50_ms, ..., agents:
        [addresses]}}, "agents": {address: {reports, ..., models, last_error}}}`` (see
        :mod:`macp.actors.model_metrics`)."""
        return dict(self._read("monitor", MODEL_METRICS))

    def model_health(self) -> dict[str, Any]:
        """Each model's ``status`` (healthy, degraded or failing) and the ``reasons``."""
        return dict(self._read("monitor", MODEL_HEALTH))
