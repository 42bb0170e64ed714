"""Agents of the teams tests (importable as ``team_agents`` by node processes): session
members that answer what they were told, and helpers with a capability each."""

from __future__ import annotations

from typing import Any

import macp
from macp import Peer, SessionMember, handler


class Member(SessionMember):
    """``review``: the body back, with who reviewed it; ``inbox``: the session messages and
    participant news this agent was told, in order."""

    capabilities = ("review",)

    @handler("review")
    def review(self, body: macp.Wire) -> macp.Wire:
        return {"reviewed": body, "by": self.address}

    @handler("inbox")
    def told(self, _body: macp.Wire) -> dict[str, Any]:
        return {"messages": list(self.session_inbox), "events": list(self.participant_events)}


class Translator(SessionMember):
    """``translate``: the body back, with who translated it."""

    capabilities = ("translate",)

    @handler("translate")
    def translate(self, body: macp.Wire) -> macp.Wire:
        return {"translated": body, "by": self.address}


class AskingPeer(Peer):
    """``ask_review``: has another agent review the body (``Peer.request_assistance``)."""

    @handler("ask_review")
    def ask_review(self, body: macp.Wire) -> macp.Wire:
        return self.request_assistance(["review"], body, timeout_s=20)  # type: ignore[no-any-return]
