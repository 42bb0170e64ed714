"""Collaboration sessions on real clusters: participants on two node processes exchange
messages, a node is SIGKILLed and its participants are reported offline (in the session's
status, and to its coordinator agent), requests for assistance are answered by a participant
with the capability or else by anyone with it, and bad input is refused in one sentence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import macp
from macp.actors.teams import URGENCY
from macp.gateway import OPERATIONS
from macp.store import Journal
from macp.testing import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from macp.testing import LocalCluster

pytestmark = pytest.mark.integration

MEMBER = "team_agents:Member"
TRANSLATOR = "team_agents:Translator"


def _inbox(cluster: macp.Cluster, agent: str) -> dict[str, Any]:
    return dict(cluster.ask(agent, "inbox").get())


def _told(cluster: macp.Cluster, agent: str) -> list[tuple[int, str, Any]]:
    """The session messages ``agent`` was told: (seq, sender, body)."""
    return [(m["seq"], m["sender"], m["body"]) for m in _inbox(cluster, agent)["messages"]]


def test_participants_on_two_nodes_exchange_messages_and_a_killed_nodes_are_reported_offline(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster(
        {"w1": {"m1": MEMBER}, "w2": {"m2": MEMBER, "x2": "agents:Echo"}},
        head={"lead": MEMBER},
        processes=True,
    )
    cluster = local.cluster
    session = cluster.sessions.create(
        "review the draft", ["m1@w1", "m2@w2", "x2@w2"], "lead@head", description="chapter 1"
    )
    sid = session["session_id"]
    assert (session["coordinator"], session["state"], session["offline"]) == (
        "lead@head", "open", [],
    )  # fmt: skip
    assert {a: p["status"] for a, p in session["participants"].items()} == {
        "lead@head": "active", "m1@w1": "active", "m2@w2": "active", "x2@w2": "active",
    }  # fmt: skip

    sent = cluster.sessions.send(sid, "m1@w1", {"draft": 1})
    assert sent == {"session_id": sid, "seq": 1, "delivered": ["lead@head", "m2@w2"],
                    "unhandled": ["x2@w2"], "offline": []}  # fmt: skip
    sent = cluster.sessions.send(sid, "lead@head", {"ok": True}, to=["m2@w2"])
    assert (sent["seq"], sent["delivered"]) == (2, ["m2@w2"])
    wait_until(lambda: len(_told(cluster, "m2@w2")) == 2, 10, "m2 was not told both messages")
    assert _told(cluster, "m2@w2") == [(1, "m1@w1", {"draft": 1}), (2, "lead@head", {"ok": True})]
    assert _told(cluster, "lead@head") == [(1, "m1@w1", {"draft": 1})]
    assert _told(cluster, "m1@w1") == []  # its own message, and one not for it
    logged = cluster.sessions.messages(sid)
    assert [(m["seq"], m["sender"], m["to"]) for m in logged] == [
        (1, "m1@w1", ["lead@head", "m2@w2", "x2@w2"]), (2, "lead@head", ["m2@w2"]),
    ]  # fmt: skip
    assert [m["seq"] for m in cluster.sessions.messages(sid, after_seq=1)] == [2]

    local.kill("w2")
    wait_until(
        lambda: cluster.sessions.status(sid)["offline"] == ["m2@w2", "x2@w2"],
        15,
        "the participants of the killed node are not offline in the session",
    )
    status = cluster.sessions.status(sid)
    assert {a: p["status"] for a, p in status["participants"].items()} == {
        "lead@head": "active", "m1@w1": "active", "m2@w2": "offline", "x2@w2": "offline",
    }  # fmt: skip
    wait_until(lambda: len(_inbox(cluster, "lead@head")["events"]) == 2, 10, "lead not told")
    events = _inbox(cluster, "lead@head")["events"]
    assert sorted((e["agent"], e["event"], e["session_id"]) for e in events) == [
        ("m2@w2", "session.participant_offline", sid),
        ("x2@w2", "session.participant_offline", sid),
    ]
    assert [s["offline"] for s in cluster.sessions.list() if s["session_id"] == sid] == [
        ["m2@w2", "x2@w2"]
    ]
    after = cluster.sessions.send(sid, "m1@w1", {"still": "here"})
    assert (after["delivered"], after["offline"]) == (["lead@head"], ["m2@w2", "x2@w2"])

    local.restart("w2")  # its agents register again: active again, and the lead is told
    wait_until(lambda: cluster.sessions.status(sid)["offline"] == [], 15, "w2's are not back")
    wait_until(lambda: len(_inbox(cluster, "lead@head")["events"]) == 4, 10, "lead not told")
    back = _inbox(cluster, "lead@head")["events"][2:]
    assert sorted((e["agent"], e["event"]) for e in back) == [
        ("m2@w2", "session.participant_online"), ("x2@w2", "session.participant_online"),
    ]  # fmt: skip
    sent = cluster.sessions.send(sid, "m1@w1", {"welcome": "back"}, to=["m2@w2"])
    assert sent["delivered"] == ["m2@w2"]
    wait_until(lambda: _told(cluster, "m2@w2") == [(4, "m1@w1", {"welcome": "back"})], 10,
               "the restarted m2 was not told the message")  # fmt: skip

    closed = cluster.sessions.close(sid)
    assert (closed["state"], closed["closed_ms"] is not None) == ("closed", True)
    with pytest.raises(macp.InvalidParams, match=rf"^session {sid} is closed: it takes no message"):
        cluster.sessions.send(sid, "m1@w1", "late")


def test_assistance_comes_from_a_participant_with_the_capability_and_else_from_anyone(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster(
        {"w1": {"m1": MEMBER, "t1": TRANSLATOR}, "w2": {"m2": MEMBER}},
        head={"lead": "agents:Echo"},
        processes=True,
    )
    cluster = local.cluster
    sid = cluster.sessions.create("help wanted", ["m2@w2"], "lead@head")["session_id"]

    # m1@w1 and m2@w2 both review; only m2 is in the session (with lead, who asks)
    helped = cluster.sessions.request_assistance(
        ["review"], {"page": 3}, urgency="critical", session_id=sid, requester="lead@head"
    )
    assert helped == {
        "task_id": helped["task_id"], "helper": "m2@w2", "priority": 3, "urgency": "critical",
        "session_id": sid, "from_session": True,
        "answer": {"reviewed": {"page": 3}, "by": "m2@w2"},
    }  # fmt: skip
    task = cluster.status(helped["task_id"])
    assert (task["state"], task["agent"], task["priority"], task["type"]) == (
        "succeeded", "m2@w2", 3, "review",
    )  # fmt: skip

    # nobody in the session translates: anyone who does helps
    helped = cluster.sessions.request_assistance(
        ["translate"], "hallo", urgency="low", session_id=sid
    )
    assert (helped["helper"], helped["from_session"], helped["priority"]) == ("t1@w1", False, 0)
    assert helped["answer"] == {"translated": "hallo", "by": "t1@w1"}
    assert cluster.status(helped["task_id"])["priority"] == URGENCY["low"] == 0

    # no session: the least loaded other agent with the capability
    helped = cluster.sessions.request_assistance(["review"], 1, requester="m1@w1")
    assert (helped["helper"], helped["priority"], helped["session_id"]) == ("m2@w2", 1, None)
    assert cluster.status(helped["task_id"])["priority"] == 1  # normal, by default

    with pytest.raises(
        macp.ResourceUnavailable,
        match=r"^no available agent has the capabilities \['translate'\] besides t1@w1; ",
    ):
        cluster.sessions.request_assistance(["translate"], "x", requester="t1@w1")
    with pytest.raises(macp.InvalidParams, match=r"'urgency' must be one of low, normal, high"):
        cluster.sessions.request_assistance(["review"], 1, urgency="asap")


def test_peer_request_assistance_is_answered_through_the_sessions_actor(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    local = local_cluster({"w1": {"p1": "team_agents:AskingPeer", "m1": MEMBER}}, processes=True)
    cluster = local.cluster
    answer = cluster.submit("ask_review", {"page": 9}, agent="p1@w1").result(timeout_s=30)
    assert answer == {"reviewed": {"page": 9}, "by": "m1@w1"}
    helped = [t for t in cluster.tasks() if t["type"] == "review"]
    assert [(t["agent"], t["state"]) for t in helped] == [("m1@w1", "succeeded")]


def test_bad_input_is_refused_in_one_sentence(local_cluster: Callable[..., LocalCluster]) -> None:
    local = local_cluster({"w1": {"m1": MEMBER, "m2": MEMBER}}, head={"lead": MEMBER})
    sessions = local.cluster.sessions
    sid = sessions.create("s", ["m1@w1"], "lead@head")["session_id"]
    with pytest.raises(macp.NotFound, match=r"^no session 'nope'; list_sessions names"):
        sessions.status("nope")
    with pytest.raises(macp.NotFound, match=r"^no session 'nope'"):
        sessions.join("nope", "m2@w1")
    with pytest.raises(
        macp.InvalidParams, match=r"^sender 'm2@w1' is not a participant of session .*join_session"
    ):
        sessions.send(sid, "m2@w1", "hi")
    with pytest.raises(macp.InvalidParams, match=r"^recipient 'm2@w1' is not a participant"):
        sessions.send(sid, "m1@w1", "hi", to=["m2@w1"])
    with pytest.raises(macp.InvalidParams, match=r"^agent 'ghost@w1' is not a participant"):
        sessions.leave(sid, "ghost@w1")
    with pytest.raises(macp.InvalidParams, match=r"^agent 'ghost@w1' is not a registered agent"):
        sessions.join(sid, "ghost@w1")
    with pytest.raises(macp.InvalidParams, match=r"^participant 'm9' must be an agent address"):
        sessions.create("s", ["m9"], "lead@head")
    with pytest.raises(macp.InvalidParams, match=r"lead@head coordinates session .* close"):
        sessions.leave(sid, "lead@head")
    with pytest.raises(macp.InvalidParams, match=r"^session.create needs 'title'"):
        sessions.create("", ["m1@w1"], "lead@head")
    sessions.join(sid, "m2@w1")
    assert sessions.leave(sid, "m2@w1")["participants"]["m2@w1"]["status"] == "left"
    with pytest.raises(macp.InvalidParams, match=r"^sender 'm2@w1' is not a participant"):
        sessions.send(sid, "m2@w1", "gone")
    with pytest.raises(
        macp.InvalidParams,
        match=r"^list_sessions: 'state' must be one of open, closed, not 'ajar'$",
    ):
        OPERATIONS["list_sessions"].parse({"state": "ajar"})


def test_a_session_record_that_is_not_one_is_set_aside_and_the_head_starts(
    local_cluster: Callable[..., LocalCluster], journal_path: Path
) -> None:
    with Journal(journal_path) as journal:  # as an older or damaged file could hold
        journal.put_session("bad", {"id": "bad", "state": "open", "updated_ms": 1})
    local = local_cluster({"w1": {"m1": MEMBER}}, head={"lead": MEMBER})
    sessions = local.cluster.sessions
    assert sessions.list() == []
    letters = local.cluster.dead_letters()
    assert [(d["source"], d["key"]) for d in letters["newest"]] == [("sessions", "bad")]
    assert letters["newest"][0]["reason"].startswith("not a session: ")
    assert sessions.create("s", ["m1@w1"], "lead@head")["state"] == "open"
