"""The Sessions actor: collaboration sessions (groups of agents with a coordinator), their
messages, the presence of their participants, and requests for assistance.

Its messages are listed in :mod:`.messages`. Every change of a session, and every message,
reaches the journal before the reply; the actor reloads its sessions when it starts. A
session's log keeps its newest ``message_log_size`` messages (1000); the newest
:data:`CLOSED_KEPT` closed sessions are kept.

Delivery: ``session.send`` tells ``session.message`` (at most once) to every active
participant but the sender, or to those in ``to``, that handles it (its registry record says
so: :class:`~.member.SessionMember`); the reply names who it was ``delivered`` to, who does
not handle it (``unhandled``) and who was ``offline``.

Presence: the actor subscribes to the registry. A participant whose record goes ``offline``
(its node is down) or ``gone`` is marked offline in every open session it is in, and the
session's coordinator agent is told ``session.participant_offline`` (if it handles it); back
``available`` or ``busy``, it is active again (``session.participant_online``). After a
restart of the registry or of this actor, one not registered again within a grace period
(three heartbeats past the first) is offline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NamedTuple

from macp.actors._params import body_map, text
from macp.actors.agent import Agent, handler
from macp.actors.coordinator.messages import SUBMIT, TASK_DONE
from macp.actors.registry import CHANGED, CONTROL_PLANE, LIST, SUBSCRIBE
from macp.actors.teams.assist import Assist, AssistRequest, Pending
from macp.actors.teams.messages import (
    SESSION_ASSIST,
    SESSION_CLOSE,
    SESSION_CREATE,
    SESSION_JOIN,
    SESSION_LEAVE,
    SESSION_LIST,
    SESSION_MESSAGE,
    SESSION_MESSAGES,
    SESSION_SEND,
    SESSION_STATUS,
)
from macp.actors.teams.session import Presence, Session, SessionState, stored_sessions
from macp.actors.teams.watch import RegistryView, check_address, presence_of
from macp.envelope import Wire, new_id, now_ms
from macp.errors import ConfigError, InternalError, InvalidParams, MacpError, NotFound
from macp.store import open_journal, storable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp._timers import Timer
    from macp.actors.context import Context, Reply
    from macp.store import Journal

__all__ = ["Sessions"]

DEFAULT_LOG_SIZE: Final = 1000
CLOSED_KEPT: Final = 1000
"""How many closed sessions are kept (the oldest closed go first, with their messages)."""
_RESUBSCRIBE_S: Final = 2.0
_EXAMPLE: Final = "{'session_id': '...', 'agent': 'name@node'}"


class _Resubscribe(NamedTuple):
    pass


class _Reconcile(NamedTuple):
    pass


class _Expire(NamedTuple):
    task_id: str


class Sessions(Agent):
    """Collaboration sessions on the head (named ``sessions``); see the module's notes.

    Config:
        journal: the journal file's path (default: the node's).
        message_log_size: how many messages each session's log keeps (default 1000).

    Threading: everything runs in the actor's thread, which alone uses its journal; timers
    only tell it messages.
    """

    capabilities = ("sessions",)
    group = CONTROL_PLANE
    role = "sessions"

    def __init__(self, config: Mapping[str, Wire] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._journal: Journal | None = None
        self._sessions: dict[str, Session] = {}
        self._view = RegistryView()
        self._pending = Pending()
        self._timer: Timer | None = None
        self._keep = DEFAULT_LOG_SIZE

    # -- lifecycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        """Open the journal, load the sessions, subscribe to the registry.

        Raises:
            ConfigError: a bad ``message_log_size`` or ``journal``.
        """
        keep = self.config.get("message_log_size", DEFAULT_LOG_SIZE)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(
                f"sessions: config 'message_log_size' must be a whole number above 0, "
                f"not {keep!r:.40}; use e.g. 1000"
            )
        self._keep = keep
        self._journal = open_journal(self.config.get("journal"), self.node.name)
        self._sessions = stored_sessions(self._journal)
        self._prune()
        self._resubscribe()
        self._timer = self.node.scheduler.call_every(
            _RESUBSCRIBE_S, self._tell_self, _Resubscribe()
        )
        self.log.info("sessions.loaded", sessions=len(self._sessions))

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._pending.cancel_all()
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise InternalError("the sessions actor has no open journal; start it first")
        return self._journal

    def _receive(self, message: Any) -> Any:
        if isinstance(message, _Resubscribe):
            self._resubscribe()
        elif isinstance(message, _Reconcile):
            self._reconcile()
        elif isinstance(message, _Expire):
            self._pending.expire(message.task_id)
        else:
            return super()._receive(message)
        return None

    # -- the registry -------------------------------------------------------------------------

    @property
    def _registry(self) -> str:
        return f"registry@{self.node.name}"

    def _resubscribe(self) -> None:
        body = {"address": self.address, "incarnation": self._view.incarnation}
        try:
            reply = self.node.ask(self._registry, SUBSCRIBE, body, timeout_s=2).get()
        except MacpError as e:
            self.log.info("sessions.registry_unreachable", error=str(e))
            return
        if reply["records"] is not None:
            self._view.replace(reply["records"])
            self._view.incarnation = reply["incarnation"]
            interval = self.node.settings.heartbeat_interval_s
            grace_s = max(1.0, 2 * interval) + 3 * interval
            self.node.scheduler.call_later(grace_s, self._tell_self, _Reconcile())

    def _reconcile(self) -> None:
        """After a (re)subscription's grace: whoever is not registered (or is down) is offline."""
        for session in list(self._sessions.values()):
            for address in session.addresses(Presence.ACTIVE, Presence.OFFLINE):
                record = self._view.records.get(address)
                status = "gone" if record is None else str(record.get("status"))
                self._presence(session, address, status)

    @handler(CHANGED)
    def _registry_changed(self, record: dict[str, Any]) -> None:
        self._view.update(record)
        address, status = record.get("address"), str(record.get("status"))
        for session in list(self._sessions.values()):
            if isinstance(address, str) and address in session.participants:
                self._presence(session, address, status)

    def _presence(self, session: Session, address: str, status: str) -> None:
        change = presence_of(status)
        if change is None:
            return
        presence, told = change
        if not session.mark(address, presence, now_ms(), f"registry status {status}"):
            return
        self._save(session)
        self.log.info("sessions.participant_marked", session=session.id, agent=address,
                      status=presence.value)  # fmt: skip
        if session.coordinator != address and self._view.handles(session.coordinator, told):
            body = {"session_id": session.id, "agent": address, "status": status}
            self._tell(session.coordinator, told, body)

    def _tell(self, address: str, type_: str, body: Wire) -> bool:
        try:
            self.tell(address, type_, body)
        except MacpError as e:  # its node is unknown or down: at most once, so not sent
            self.log.info("sessions.not_told", to=address, type=type_, error=str(e))
            return False
        return True

    def _registered(self, field: str, value: object) -> str:
        address = check_address(field, value)
        if address not in self._view.records:
            records = self.node.ask(self._registry, LIST, timeout_s=5).get()
            self._view.replace(records)
        if address not in self._view.records:
            raise InvalidParams(
                f"{field} {address!r} is not a registered agent; agent_list names the agents"
            )
        return address

    # -- sessions -----------------------------------------------------------------------------

    def _save(self, session: Session) -> None:
        self.journal.put_session(session.id, session.record())

    def _session(self, type_: str, body: dict[str, Wire]) -> Session:
        session_id = text(type_, body, "session_id")
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(
                f"no session {session_id!r}; list_sessions names the sessions",
                data={"session_id": session_id},
            )
        return session

    @handler(SESSION_CREATE)
    def _on_create(self, body: Wire) -> Wire:
        """Open a session of ``participants`` (agent addresses) led by ``coordinator``."""
        got = body_map(SESSION_CREATE, body, "{'title': ..., 'participants': [...], ...}")
        title = text(SESSION_CREATE, got, "title")
        description = got.get("description") or ""
        if not isinstance(description, str):
            raise InvalidParams(f"{SESSION_CREATE} 'description' must be a string")
        participants = got.get("participants")
        if not isinstance(participants, list):
            raise InvalidParams(
                f"{SESSION_CREATE} needs 'participants' as a list of agent addresses, "
                f"not {participants!r:.60}"
            )
        coordinator = self._registered("coordinator", got.get("coordinator"))
        members = [self._registered("participant", p) for p in participants]
        session = Session.new(new_id(), title=title, description=description,
                              coordinator=coordinator, participants=members,
                              now_ms=now_ms())  # fmt: skip
        for address in session.addresses():
            if self._view.down(address):
                session.mark(address, Presence.OFFLINE, session.created_ms, "offline at start")
        self._save(session)
        self._sessions[session.id] = session
        self.log.info("sessions.created", session=session.id, participants=len(members))
        return session.record()

    @handler(SESSION_JOIN)
    def _on_join(self, body: Wire) -> Wire:
        got = body_map(SESSION_JOIN, body, _EXAMPLE)
        session = self._session(SESSION_JOIN, got)
        agent = self._registered("agent", got.get("agent"))
        session.join(agent, now_ms())
        if self._view.down(agent):
            session.mark(agent, Presence.OFFLINE, now_ms(), "offline when it joined")
        self._save(session)
        return session.record()

    @handler(SESSION_LEAVE)
    def _on_leave(self, body: Wire) -> Wire:
        got = body_map(SESSION_LEAVE, body, _EXAMPLE)
        session = self._session(SESSION_LEAVE, got)
        session.leave(check_address("agent", got.get("agent")), now_ms())
        self._save(session)
        return session.record()

    @handler(SESSION_CLOSE)
    def _on_close(self, body: Wire) -> Wire:
        session = self._session(SESSION_CLOSE, body_map(SESSION_CLOSE, body, _EXAMPLE))
        if session.close(now_ms()):
            self._save(session)
            self._prune()
        return session.record()

    def _prune(self) -> None:
        closed = sorted((s.closed_ms or 0, s.id) for s in self._sessions.values()
                        if s.state is SessionState.CLOSED)  # fmt: skip
        for _, session_id in closed[: max(0, len(closed) - CLOSED_KEPT)]:
            self.journal.delete_session(session_id)
            del self._sessions[session_id]

    @handler(SESSION_STATUS)
    def _on_status(self, body: Wire) -> Wire:
        return self._session(SESSION_STATUS, body_map(SESSION_STATUS, body, _EXAMPLE)).record()

    @handler(SESSION_LIST)
    def _on_list_sessions(self, body: Wire) -> Wire:
        state = (body or {}).get("state") if isinstance(body, dict | None) else None
        if state is not None and state not in set(SessionState):
            raise InvalidParams(f"{SESSION_LIST} 'state' must be open or closed, not {state!r:.40}")
        found: list[Wire] = [
            s.listed()
            for s in sorted(self._sessions.values(), key=lambda s: (s.created_ms, s.id))
            if state is None or s.state.value == state
        ]
        return found

    # -- messages -----------------------------------------------------------------------------

    @handler(SESSION_SEND)
    def _on_send(self, body: Wire) -> Wire:
        """Log a message of a participant and tell it to the others (or to ``to``)."""
        got = body_map(SESSION_SEND, body, "{'session_id': ..., 'sender': ..., 'body': ...}")
        session = self._session(SESSION_SEND, got)
        sender = check_address("sender", got.get("sender"))
        session.member(sender, "sender")
        targets = session.recipients(sender, got.get("to"))
        storable(got.get("body"), f"{SESSION_SEND} field 'body'", "body")  # before its seq
        now = now_ms()
        seq = session.next_seq(now)
        message: dict[str, Wire] = {"session_id": session.id, "seq": seq, "sender": sender,
                                    "body": got.get("body"), "to": list(targets),
                                    "ts_ms": now}  # fmt: skip
        with self.journal.transaction() as journal:
            journal.add_session_message(session.id, seq, message, self._keep)
            self._save(session)
        delivered: list[Wire] = []
        unhandled: list[Wire] = []
        offline: list[Wire] = []
        for address in targets:
            if session.participants[address].presence is Presence.OFFLINE:
                offline.append(address)
            elif not self._view.handles(address, SESSION_MESSAGE):
                unhandled.append(address)
            elif self._tell(address, SESSION_MESSAGE, message):
                delivered.append(address)
            else:
                offline.append(address)
        return {"session_id": session.id, "seq": seq, "delivered": delivered,
                "unhandled": unhandled, "offline": offline}  # fmt: skip

    @handler(SESSION_MESSAGES)
    def _on_messages(self, body: Wire) -> Wire:
        """The logged messages numbered above ``after_seq`` (0), oldest first, at most ``limit``."""
        got = body_map(SESSION_MESSAGES, body, _EXAMPLE)
        session = self._session(SESSION_MESSAGES, got)
        after, limit = got.get("after_seq", 0), got.get("limit", 100)
        for name, value, least in (("after_seq", after, 0), ("limit", limit, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidParams(
                    f"{SESSION_MESSAGES} '{name}' must be a whole number of at least {least}, "
                    f"not {value!r:.40}"
                )
        assert isinstance(after, int)
        assert isinstance(limit, int)
        found: list[Wire] = list(
            self.journal.session_messages(session.id, after_seq=after, limit=min(limit, 1000))
        )
        return {"session_id": session.id, "messages": found, "last_seq": session.last_seq}

    # -- assistance ---------------------------------------------------------------------------

    @handler(SESSION_ASSIST)
    def _on_assist(self, body: Wire, ctx: Context) -> Reply:
        """Submit the work to the helper chosen (see :mod:`.assist`); answered when it ends."""
        request = AssistRequest.of(body)
        participants = None
        if request.session_id is not None:
            session = self._session(SESSION_ASSIST, {"session_id": request.session_id})
            participants = session.addresses(Presence.ACTIVE)
        helper, ours = request.choose(self._view.capable(request.capabilities), participants)
        spec: dict[str, Wire] = {
            "type": request.type, "body": request.body, "agent": helper,
            "capabilities": list(request.capabilities), "priority": request.priority,
            "timeout_s": request.timeout_s, "notify": self.address,
        }  # fmt: skip
        coordinator = f"coordinator@{self.node.name}"
        answer = self.ask(coordinator, SUBMIT, spec, timeout_s=10).get()
        task_id = str(answer["task_id"])
        assist = Assist(ctx.defer(), request, helper, ours)
        assist.timer = self.node.scheduler.call_later(
            request.timeout_s, self._tell_self, _Expire(task_id)
        )
        self._pending.add(task_id, assist)
        self.log.info("sessions.assist", task_id=task_id, helper=helper,
                      session=request.session_id, priority=request.priority)  # fmt: skip
        return assist.reply

    @handler(TASK_DONE)
    def _task_done(self, body: Wire) -> None:
        if isinstance(body, dict):
            self._pending.done(body)
