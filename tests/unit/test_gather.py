"""Scatter-gather aggregation (``macp.actors.coordinator.gather``): every mode, pure, clock-free."""

from __future__ import annotations

from typing import Any

import pytest

from macp import InvalidParams
from macp.actors.coordinator.gather import Decision, Gather

FIVE = ["a", "b", "c", "d", "e"]
THREE = ["a", "b", "c"]
BOOM = {"code": -32001, "error": "AgentError", "message": "ValueError: boom"}


def _ok(gather: Gather, agent: str, value: Any) -> Decision | None:
    return gather.add(agent, ok=True, value=value)


def _failed(gather: Gather, agent: str) -> Decision | None:
    return gather.add(agent, ok=False, value=BOOM)


# -- all --------------------------------------------------------------------------------------


def test_all_succeeds_with_every_answer_in_the_order_the_agents_were_asked() -> None:
    gather = Gather(THREE, "all")
    assert _ok(gather, "c", 3) is None
    assert _ok(gather, "a", 1) is None
    assert _ok(gather, "b", 2) == Decision(
        ok=True,
        result=[
            {"agent": "a", "ok": True, "result": 1},
            {"agent": "b", "ok": True, "result": 2},
            {"agent": "c", "ok": True, "result": 3},
        ],
        reason="all answered",
    )


def test_all_fails_at_the_first_failure_by_default() -> None:
    gather = Gather(THREE, "all")
    assert _ok(gather, "a", 1) is None
    assert _failed(gather, "b") == Decision(
        ok=False,
        result=[
            {"agent": "a", "ok": True, "result": 1},
            {"agent": "b", "ok": False, "error": BOOM},
        ],
        reason="1 of 3 agents failed",
    )


def test_all_tolerates_failures_up_to_the_threshold_and_fails_past_it() -> None:
    tolerant = Gather(THREE, "all", failure_threshold=1)
    assert _failed(tolerant, "a") is None
    assert _ok(tolerant, "b", 2) is None
    decision = _ok(tolerant, "c", 3)
    assert decision is not None
    assert (decision.ok, decision.reason) == (True, "all answered")
    assert decision.result[0] == {"agent": "a", "ok": False, "error": BOOM}

    strict = Gather(THREE, "all", failure_threshold=1)
    assert _failed(strict, "a") is None
    decision = _failed(strict, "b")
    assert decision is not None
    assert (decision.ok, decision.reason) == (False, "2 of 3 agents failed")


def test_all_fails_at_the_deadline_with_the_answers_it_has() -> None:
    gather = Gather(THREE, "all")
    _ok(gather, "b", 2)
    assert gather.expire() == Decision(
        ok=False,
        result=[{"agent": "b", "ok": True, "result": 2}],
        reason="deadline passed with 1 of 3 answers",
    )


# -- first ------------------------------------------------------------------------------------


def test_first_returns_the_first_success_after_failures() -> None:
    gather = Gather(THREE, "first")
    assert _failed(gather, "b") is None
    assert _ok(gather, "c", {"v": 3}) == Decision(
        ok=True, result={"v": 3}, reason="first answer from c"
    )


def test_first_fails_only_when_every_agent_failed_by_default() -> None:
    gather = Gather(THREE, "first")
    assert _failed(gather, "a") is None
    assert _failed(gather, "b") is None
    decision = _failed(gather, "c")
    assert decision is not None
    assert (decision.ok, decision.reason) == (False, "3 of 3 agents failed")
    assert [a["agent"] for a in decision.result] == THREE


def test_first_with_a_zero_failure_threshold_fails_at_the_first_failure() -> None:
    gather = Gather(THREE, "first", failure_threshold=0)
    decision = _failed(gather, "a")
    assert decision is not None
    assert (decision.ok, decision.reason) == (False, "1 of 3 agents failed")


def test_first_fails_at_the_deadline_when_nobody_succeeded() -> None:
    gather = Gather(THREE, "first")
    _failed(gather, "a")
    assert gather.expire() == Decision(
        ok=False,
        result=[{"agent": "a", "ok": False, "error": BOOM}],
        reason="deadline passed with 1 of 3 answers",
    )


# -- majority ---------------------------------------------------------------------------------


def test_majority_succeeds_once_more_than_half_of_the_expected_voters_agree() -> None:
    gather = Gather(FIVE, "majority")
    assert gather.quorum == 3
    assert _ok(gather, "a", "yes") is None
    assert _ok(gather, "b", "no") is None
    assert _ok(gather, "c", "yes") is None
    assert _ok(gather, "d", "yes") == Decision(ok=True, result="yes", reason="3 of 5 agreed")


def test_majority_counts_the_expected_voters_not_those_who_answered() -> None:
    gather = Gather(FIVE, "majority")
    # 2 of the 3 who answered agree: a majority of the answers, not of the 5 voters.
    assert _ok(gather, "a", 1) is None
    assert _ok(gather, "b", 1) is None
    assert _ok(gather, "c", 2) is None
    decision = gather.expire()
    assert decision.ok is False
    assert decision.result == [
        {"agent": "a", "ok": True, "result": 1},
        {"agent": "b", "ok": True, "result": 1},
        {"agent": "c", "ok": True, "result": 2},
    ]


def test_majority_at_the_deadline_says_the_deadline_passed() -> None:
    gather = Gather(FIVE, "majority")
    _ok(gather, "a", 1)
    _ok(gather, "b", 1)
    _ok(gather, "c", 2)
    assert gather.expire().reason == "deadline passed with 3 of 5 answers"


def test_majority_fails_as_soon_as_no_value_can_still_reach_it() -> None:
    gather = Gather(FIVE, "majority")
    assert _ok(gather, "a", 1) is None
    assert _ok(gather, "b", 2) is None
    assert _ok(gather, "c", 3) is None
    # Each value has 1 vote and 1 voter is left: none can reach 3, without waiting for "e".
    decision = _ok(gather, "d", 4)
    assert decision is not None
    assert (decision.ok, decision.reason) == (False, "no value can reach 3 of 5 votes")
    assert [a["agent"] for a in decision.result] == ["a", "b", "c", "d"]


def test_majority_fails_once_more_voters_failed_than_a_majority_can_spare() -> None:
    gather = Gather(FIVE, "majority")
    assert gather.failure_threshold == 2
    assert _failed(gather, "a") is None
    assert _failed(gather, "b") is None
    decision = _failed(gather, "c")
    assert decision is not None
    assert (decision.ok, decision.reason) == (False, "3 of 5 agents failed")


def test_a_failure_is_not_a_vote() -> None:
    gather = Gather(THREE, "majority")
    assert _failed(gather, "a") is None
    assert _ok(gather, "b", "x") is None
    assert _ok(gather, "c", "x") == Decision(ok=True, result="x", reason="2 of 3 agreed")


def test_majority_compares_answers_by_value_whatever_the_key_order() -> None:
    gather = Gather(THREE, "majority")
    first = {"label": "cat", "scores": [1, {"p": 0.9, "q": 0.1}]}
    same = {"scores": [1, {"q": 0.1, "p": 0.9}], "label": "cat"}
    assert _ok(gather, "a", first) is None
    decision = _ok(gather, "b", same)
    assert decision == Decision(ok=True, result=first, reason="2 of 3 agreed")


def test_answers_that_differ_inside_a_nested_value_are_not_equal() -> None:
    gather = Gather(THREE, "majority")
    _ok(gather, "a", {"label": "cat", "scores": [1, 2]})
    assert _ok(gather, "b", {"label": "cat", "scores": [2, 1]}) is None


# -- quorum -----------------------------------------------------------------------------------


def test_quorum_succeeds_once_n_voters_agree() -> None:
    gather = Gather(FIVE, "quorum", quorum=2)
    assert _ok(gather, "a", "x") is None
    assert _ok(gather, "b", "y") is None
    assert _ok(gather, "c", "y") == Decision(ok=True, result="y", reason="2 of 5 agreed")


def test_quorum_of_every_voter_fails_at_the_first_disagreement() -> None:
    gather = Gather(THREE, "quorum", quorum=3)
    assert _ok(gather, "a", "x") is None
    decision = _ok(gather, "b", "y")
    assert decision is not None
    assert (decision.ok, decision.reason) == (False, "no value can reach 3 of 3 votes")


def test_quorum_fails_past_an_explicit_failure_threshold() -> None:
    gather = Gather(FIVE, "quorum", quorum=2, failure_threshold=1)
    assert _failed(gather, "a") is None
    decision = _failed(gather, "b")
    assert decision is not None
    assert (decision.ok, decision.reason) == (False, "2 of 5 agents failed")


def test_quorum_fails_at_the_deadline_when_too_few_agreed() -> None:
    gather = Gather(FIVE, "quorum", quorum=2)
    _ok(gather, "a", "x")
    decision = gather.expire()
    assert decision.ok is False
    assert decision.result == [{"agent": "a", "ok": True, "result": "x"}]


# -- answers that do not count ----------------------------------------------------------------


def test_a_second_answer_from_the_same_agent_is_ignored() -> None:
    gather = Gather(THREE, "majority")
    assert _ok(gather, "a", "x") is None
    assert _ok(gather, "a", "x") is None
    assert gather.answers == {"a": {"ok": True, "result": "x"}}
    failing = Gather(["a", "b"], "first")
    assert _failed(failing, "a") is None
    assert _failed(failing, "a") is None
    assert failing.failures == 1


def test_a_late_success_does_not_replace_an_agents_failure() -> None:
    gather = Gather(["a", "b"], "first")
    _failed(gather, "a")
    assert _ok(gather, "a", "late") is None
    assert gather.answers["a"] == {"ok": False, "error": BOOM}


def test_an_answer_from_an_agent_that_was_not_asked_is_ignored() -> None:
    gather = Gather(THREE, "majority")
    assert _ok(gather, "a", "x") is None
    assert _ok(gather, "intruder", "x") is None
    assert _failed(gather, "intruder") is None
    assert set(gather.answers) == {"a"}
    assert gather.failures == 0


# -- invalid parameters -----------------------------------------------------------------------


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(
        InvalidParams,
        match=r"^aggregation must be one of all, first, majority, quorum, not 'most'$",
    ):
        Gather(THREE, "most")


@pytest.mark.parametrize("quorum", [None, 0, 4, 2.0, "2"])
def test_a_quorum_outside_1_to_the_agents_asked_is_refused(quorum: object) -> None:
    with pytest.raises(
        InvalidParams, match=r"^quorum must be an integer from 1 to 3 \(the agents asked\)$"
    ):
        Gather(THREE, "quorum", quorum=quorum)  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [-1, "1", 1.5, True])
def test_a_failure_threshold_that_is_not_an_integer_from_0_is_refused(threshold: object) -> None:
    with pytest.raises(InvalidParams, match=r"^failure_threshold must be an integer"):
        Gather(THREE, "all", failure_threshold=threshold)  # type: ignore[arg-type]


def test_a_boolean_quorum_is_refused() -> None:
    with pytest.raises(
        InvalidParams, match=r"^quorum must be an integer from 1 to 3 \(the agents asked\)$"
    ):
        Gather(THREE, "quorum", quorum=True)


def test_a_boolean_answer_and_an_integer_answer_are_different_votes() -> None:
    gather = Gather(THREE, "majority")
    _ok(gather, "a", value=True)
    assert _ok(gather, "b", 1) is None
