"""The Evaluations actor: what evaluators said of agents' contributions, and each agent's score.

An evaluation names its ``evaluator`` (an agent's address, or any name: a person, a program),
the ``contributor`` (the agent evaluated, ``name@node``), what it evaluates (a coordinator
``task_id``, whose agent is the contributor when none is named, and/or a ``result_ref``: any
reference to a result, e.g. a workflow run's step or a memory key), ``scores`` by criterion
(each a number from 0, worst, to 1, best) and ``comments``. It is journaled before it is
answered (the ``evaluations`` table), so it survives a restart of the head.

An agent's ``performance_score`` is the mean, over its evaluations, of each evaluation's
mean score (every evaluation counts the same, whatever its number of criteria); an agent
without evaluations has none (``None``). The actor derives every score from the journal when
it starts and sends them to the registry, which shows them in each agent's record
(``performance_score``, ``evaluations``: how many) and tells the coordinator; the coordinator
prefers the better scored of equally loaded agents (see
:class:`~macp.actors.coordinator.CoordinatorOptions`'s ``prefer_scored``). A restarted
registry gets them again within :data:`RESEND_S`.

Messages: ``evaluations.add`` (an evaluation) -> the evaluation stored, with the contributor's
``performance_score`` and ``evaluations`` count after it; ``evaluations.list``
``{contributor?, task_id?, limit?}`` -> ``{evaluations, count}``, newest first;
``evaluations.scores`` -> ``{address: {performance_score, evaluations}}``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from macp.actors.agent import Agent, handler
from macp.actors.coordinator.messages import STATUS
from macp.actors.registry import CONTROL_PLANE, LIST, SCORES
from macp.envelope import Wire, new_id, now_ms
from macp.errors import InvalidParams, MacpError, NotFound
from macp.store import open_journal

if TYPE_CHECKING:
    from collections.abc import Callable

    from macp.actors.context import Context, Deferred, Reply
    from macp.futures import AskFuture

__all__ = ["ADD", "FIELDS", "LIST_EVALUATIONS", "RESEND_S", "SCORES_OF", "Evaluations"]

ADD: Final = "evaluations.add"
LIST_EVALUATIONS: Final = "evaluations.list"
SCORES_OF: Final = "evaluations.scores"
RESEND_S: Final = 2.0
FIELDS: Final = ("evaluator", "contributor", "task_id", "result_ref", "scores", "comments")
_MAX_COMMENTS: Final = 10_000
_MAX_LIMIT: Final = 1000


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidParams(
            f"an evaluation's {name!r} must be a non-empty string, not {value!r:.60}"
        )
    return value


def _scores(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict) or not raw:
        raise InvalidParams(
            f"an evaluation's 'scores' must map each criterion to a number from 0 to 1, not "
            f"{raw!r:.60}; e.g. {{'accuracy': 0.8}}"
        )
    for name, value in raw.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not 0 <= value <= 1:
            raise InvalidParams(
                f"scores[{name!r}] must be a number from 0 (worst) to 1 (best), not {value!r:.40}"
            )
        if not isinstance(name, str) or not name:
            raise InvalidParams(f"a criterion of 'scores' must be a non-empty name, not {name!r}")
    return {name: float(value) for name, value in raw.items()}


def checked(body: Wire) -> dict[str, Any]:
    """An ``evaluations.add`` body checked: the evaluation to store (without its contributor
    when it comes from the task).

    Raises:
        InvalidParams: a field is unknown, missing or malformed (named, with the fix).
    """
    if not isinstance(body, dict):
        raise InvalidParams(f"an evaluation must be a map of {', '.join(FIELDS)}, not {body!r:.60}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidParams(f"an evaluation has no field {unknown[0]!r}; give {', '.join(FIELDS)}")
    contributor = _text(body, "contributor")
    if contributor is not None and contributor.count("@") != 1:
        raise InvalidParams(
            f"an evaluation's 'contributor' must be an address name@node, not {contributor!r:.60}"
        )
    task_id, result_ref = _text(body, "task_id"), _text(body, "result_ref")
    if task_id is None and result_ref is None:
        raise InvalidParams("an evaluation needs the 'task_id' or the 'result_ref' it evaluates")
    if contributor is None and task_id is None:
        raise InvalidParams("an evaluation of a 'result_ref' needs its 'contributor' (name@node)")
    comments = body.get("comments") or ""
    if not isinstance(comments, str) or len(comments) > _MAX_COMMENTS:
        raise InvalidParams(
            f"an evaluation's 'comments' must be text of at most {_MAX_COMMENTS} characters"
        )
    scores = _scores(body.get("scores"))
    return {
        "evaluator": _text(body, "evaluator", required=True), "contributor": contributor,
        "task_id": task_id, "result_ref": result_ref, "scores": scores, "comments": comments,
        "score": sum(scores.values()) / len(scores),
    }  # fmt: skip


class _Then(NamedTuple):
    """A reply come back to the actor's thread, for ``step``."""

    step: Callable[[AskFuture], None]
    future: AskFuture


class _Resend(NamedTuple):
    pass


class Evaluations(Agent):
    """Evaluations and the scores derived from them (one per cluster, on the head node, named
    ``evaluations``).

    Config: ``journal`` (path), ``registry`` and ``coordinator`` (addresses, default those
    names on this node).
    """

    capabilities = ("evaluations",)
    group = CONTROL_PLANE

    def on_start(self) -> None:
        cfg = self.config
        self.journal = open_journal(cfg.get("journal"), self.node.name)
        self.registry = str(cfg.get("registry") or f"registry@{self.node.name}")
        self.coordinator = str(cfg.get("coordinator") or f"coordinator@{self.node.name}")
        self.totals = self.journal.evaluation_totals()
        count = sum(n for _, n in self.totals.values())
        self.log.info("evaluations.replayed", agents=len(self.totals), evaluations=count)
        self.registry_incarnation: str | None = None
        self.timer = self.node.scheduler.call_every(RESEND_S, self._tell_self, _Resend())
        self._tell_self(_Resend())

    def on_stop(self) -> None:
        self.timer.cancel()
        self.journal.close()

    def on_failure(self, *_exc: object) -> None:
        self.timer.cancel()
        self.journal.close()

    def _receive(self, message: Any) -> Any:
        if isinstance(message, _Then):
            return message.step(message.future)
        if isinstance(message, _Resend):
            return self._check_registry()
        return super()._receive(message)

    def _then(self, future: AskFuture, step: Callable[[AskFuture], None]) -> None:
        """Run ``step`` with ``future`` on this actor's thread once it settles."""
        future.add_done_callback(lambda done: self._tell_self(_Then(step, done)))

    # -- scores -------------------------------------------------------------------------------

    def score(self, address: str) -> dict[str, Wire]:
        total, count = self.totals.get(address, (0.0, 0))
        return {"performance_score": total / count if count else None, "evaluations": count}

    def _check_registry(self) -> None:
        """Send every score again to a registry that is not the one that has them."""
        try:
            future = self.ask(self.registry, SCORES, {"scores": {}}, timeout_s=RESEND_S)
        except MacpError:
            return
        self._then(future, self._registry_answered)

    def _registry_answered(self, future: AskFuture) -> None:
        if future.exception() is not None:
            return
        incarnation = future.result().get("incarnation")
        if incarnation == self.registry_incarnation:
            return
        scores: dict[str, Wire] = {a: self.score(a) for a in self.totals}
        try:
            sent = self.ask(self.registry, SCORES, {"scores": scores, "replace": True})
        except MacpError:
            return
        self._then(sent, partial(self._resent, incarnation))

    def _resent(self, incarnation: str, future: AskFuture) -> None:
        if future.exception() is None and future.result().get("incarnation") == incarnation:
            self.registry_incarnation = incarnation

    # -- evaluations --------------------------------------------------------------------------

    @handler(ADD)
    def add(self, body: Wire, ctx: Context) -> Reply:
        """Store an evaluation (see the module docstring); answered once the registry shows
        the contributor's new score."""
        evaluation = checked(body)
        reply = ctx.defer()
        task_id = evaluation["task_id"]
        if task_id is not None:
            future = self.ask(self.coordinator, STATUS, {"task_id": task_id})
            self._then(future, partial(self._task_known, evaluation, reply))
        else:
            future = self.ask(self.registry, LIST)
            self._then(future, partial(self._contributor_known, evaluation, reply))
        return reply

    def _task_known(self, evaluation: dict[str, Any], reply: Deferred, future: AskFuture) -> None:
        error = future.exception()
        if isinstance(error, NotFound):
            reply.fail(NotFound(
                f"no task {evaluation['task_id']!r} to evaluate; task_list names the tasks",
                data={"task_id": evaluation["task_id"]},
            ))  # fmt: skip
            return
        if error is not None:
            reply.fail(error)
            return
        agent = future.result().get("agent")
        if evaluation["contributor"] is not None:  # someone else's part in it: is it known?
            registered = self.ask(self.registry, LIST)
            self._then(registered, partial(self._contributor_known, evaluation, reply))
            return
        if not isinstance(agent, str):
            reply.fail(InvalidParams(
                f"task {evaluation['task_id']!r} has not run on an agent yet; name the "
                "'contributor' (name@node) it evaluates"
            ))  # fmt: skip
            return
        evaluation["contributor"] = agent
        self._store(evaluation, reply)

    def _contributor_known(
        self, evaluation: dict[str, Any], reply: Deferred, future: AskFuture
    ) -> None:
        error = future.exception()
        if error is not None:
            reply.fail(error)
            return
        contributor = evaluation["contributor"]
        if contributor not in {r["address"] for r in future.result()}:
            reply.fail(NotFound(
                f"no agent {contributor!r} is registered to evaluate; agent_list names those "
                "that are", data={"agent": contributor},
            ))  # fmt: skip
            return
        self._store(evaluation, reply)

    def _store(self, evaluation: dict[str, Any], reply: Deferred) -> None:
        record = {**evaluation, "id": new_id(), "time_ms": now_ms()}
        try:
            self.journal.put_evaluation(record)
        except MacpError as e:
            reply.fail(e)
            return
        contributor = record["contributor"]
        total, count = self.totals.get(contributor, (0.0, 0))
        self.totals[contributor] = (total + record["score"], count + 1)
        score = self.score(contributor)
        self.log.info(
            "evaluation.stored", id=record["id"], contributor=contributor,
            score=record["score"], performance_score=score["performance_score"],
        )  # fmt: skip
        answer: dict[str, Wire] = {**record, **score}
        try:
            future = self.ask(self.registry, SCORES, {"scores": {contributor: score}})
        except MacpError:
            reply.resolve(answer)  # journaled: the registry gets it with the next resend
            return
        future.add_done_callback(lambda _done: reply.resolve(answer))

    @handler(LIST_EVALUATIONS)
    def list_evaluations(self, body: Wire) -> Wire:
        """The newest evaluations, of a ``contributor`` and/or about a ``task_id`` if given."""
        body = body if isinstance(body, dict) else {}
        contributor, task_id = _text(body, "contributor"), _text(body, "task_id")
        limit = body.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
            raise InvalidParams(
                f"'limit' must be a whole number from 1 to {_MAX_LIMIT}, not {limit!r:.40}"
            )
        found = self.journal.evaluations(contributor=contributor, task_id=task_id, limit=limit)
        return {"evaluations": found, "count": len(found)}

    @handler(SCORES_OF)
    def scores(self, _body: Wire) -> Wire:
        """Every evaluated agent's ``performance_score`` and count of evaluations."""
        return {address: self.score(address) for address in sorted(self.totals)}
