"""The base of every actor a supervisor can own: agents and supervisors themselves.

Pykka has no links or monitors, so the actor reports its own end: whatever way its thread ends
(a normal stop, a crash in ``on_start``, a handler or ``on_stop``), the last thing it does is
tell its parent :class:`ChildExited` with the reason. A supervisor also watches the thread, in
case that report never comes, and what it is handling (:meth:`Supervised._in_hand`), in case it
never ends.

Python cannot kill a thread, so a supervisor that gives up on an incarnation *abandons* it
(:meth:`Supervised._abandon`): the thread is left to finish its handler, then ends without
reading its mailbox again (the name's next incarnation reads it), without handing anything
back to it, and without an exit report.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import pykka
from pykka._envelope import Envelope as PykkaEnvelope

from macp._inbox import ActorInbox, InboxClosed, PriorityInbox
from macp.envelope import Envelope
from macp.log import get_logger

if TYPE_CHECKING:
    from collections import Counter
    from types import TracebackType

    import structlog

    from macp._timers import Scheduler
    from macp.futures import AskFuture
    from macp.settings import Settings

__all__ = ["ChildExited", "InHand", "Runtime", "Supervised", "answer_foreign", "incarnation_of"]

_log = get_logger("macp.actor")


class Runtime(Protocol):
    """What the supervision core needs of the node it runs on (:class:`~macp.node.Node`
    implements it): supervisors and the actors they own reach their node through this alone.

    The private methods are the node's side of supervision, called by supervisors and their
    actors only.
    """

    @property
    def name(self) -> str: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def scheduler(self) -> Scheduler: ...
    @property
    def counters(self) -> Counter[str]: ...

    def send(self, env: Envelope) -> None:
        """Route ``env`` (to a local inbox, a waiting ask, or another node)."""

    def _register(self, name: str, actor: Supervised) -> None:
        """Claim ``name`` on the node for ``actor`` (raises ``ConfigError`` if it is taken)."""

    def _close_mailbox(self, name: str, inbox: PriorityInbox) -> None:
        """The name goes for good: refuse what is queued for it, and what comes later."""

    def _on_root_exit(self, reason: BaseException | None) -> None:
        """The node's root supervisor ended (``reason`` ``None``: a clean stop)."""

    def _agent_changed(self, address: str) -> AskFuture | None:
        """The agent at ``address`` changed state (a command, a restart): a future settled once
        the registry has the news, or ``None`` when there is no registry to tell first."""


class ChildExited(NamedTuple):
    """Told to the parent by a child whose thread is ending.

    Attributes:
        name: the child's name.
        urn: the child's actor URN, to tell one incarnation of a name from the next.
        reason: the exception that ended it, or ``None`` for a normal stop.
    """

    name: str
    urn: str
    reason: BaseException | None


class InHand(NamedTuple):
    """What an actor is handling, as its supervisor sees it.

    Attributes:
        type: the message type (for a coordinator's task, the task's type).
        task_id: the task's id, for a task.
        due_ms: when the handler's sender stops waiting (epoch ms): the deadline, or for a
            task, the end of its attempt's timeout; ``None`` for a message with no deadline.
    """

    type: str
    task_id: str | None
    due_ms: int | None


def incarnation_of(actor: pykka.Actor) -> str:
    """The id of one incarnation of an actor: its name and address outlive restarts, not this."""
    return actor.actor_urn.rpartition(":")[2]


def answer_foreign(items: list[Any], name: str) -> None:
    """Settle Pykka's own queued messages (stop requests, proxy calls) of a gone actor."""
    for item in items:
        if type(item) is Envelope or item.reply_to is None:
            continue
        if isinstance(item.message, pykka.messages._ActorStop):
            item.reply_to.set(None)
        else:
            dead = pykka.ActorDeadError(f"{name} stopped before handling the message")
            item.reply_to.set_exception(exc_info=(type(dead), dead, None))


class Supervised(pykka.ThreadingActor):
    """A Pykka actor with a name, a node, a parent, and an exit report.

    Threading: ``__init__`` runs in the creator's thread; ``on_start``, handlers, ``on_stop`` and
    ``on_failure`` in the actor's own thread. Actor threads are daemon threads, so an actor stuck
    in a handler cannot keep the process alive after its node has stopped.
    """

    use_daemon_thread = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = ""
        self._parent: pykka.ActorRef[Any] | None = None
        self._ready = threading.Event()
        self._exit_reason: BaseException | None = None
        self._exit_reported = False
        self._thread: threading.Thread | None = None
        self._crash_expected = False
        self._abandoned = False
        self.log: structlog.stdlib.BoundLogger = _log

    @staticmethod
    def _create_actor_inbox() -> ActorInbox:
        return ActorInbox(PriorityInbox())

    @property
    def parent(self) -> pykka.ActorRef[Any] | None:
        """The supervisor this actor reports to (``None`` for a node's root supervisor)."""
        return self._parent

    @property
    def inbox(self) -> PriorityInbox:
        """The mailbox of this actor's name (kept across restarts)."""
        inbox = self.actor_inbox
        assert isinstance(inbox, ActorInbox)
        return inbox.mailbox

    node: Runtime

    def _bind(
        self,
        name: str,
        node: Runtime,
        parent: pykka.ActorRef[Any] | None,
        inbox: PriorityInbox | None = None,
    ) -> None:
        """Give the actor its place before its thread starts (runs in the supervisor's thread).

        ``inbox`` is the mailbox of the incarnation this one replaces, taken over with what
        is queued in it.
        """
        self.name = name
        self.node = node
        self._parent = parent
        self.log = _log.bind(node=node.name, actor=name)
        if inbox is not None:
            self.actor_inbox = ActorInbox(inbox)
            self._actor_ref = pykka.ActorRef(self)

    def _start_actor_loop(self) -> None:
        self._thread = threading.Thread(
            target=self._actor_loop, name=f"macp-{self.node.name}-{self.name}", daemon=True
        )
        self._thread.start()

    def _tell_self(self, message: Any) -> None:
        """Queue a local message to this actor's name, whichever incarnation will handle it
        (safe from any thread; dropped once the name is gone)."""
        with contextlib.suppress(InboxClosed):
            self.inbox.put(PykkaEnvelope(message))

    def _wait_started(self, timeout_s: float) -> bool:
        """Wait until ``on_start`` has finished; ``False`` if the actor died starting or hung."""
        return self._ready.wait(timeout_s) and not self.actor_stopped.is_set()

    def _in_hand(self) -> InHand | None:
        """What this actor is handling now, if anything (read from its supervisor's thread)."""
        return None

    def _stop_within(self, timeout_s: float) -> bool:
        """Ask this incarnation to stop and wait until its thread has ended; ``False`` if it
        has not within ``timeout_s`` (a handler that does not return)."""
        with contextlib.suppress(pykka.ActorDeadError):  # already stopped
            self.actor_ref.stop(block=False)
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return thread is None or not thread.is_alive()

    def _abandon(self) -> None:
        """Give up on this incarnation (called from its supervisor's thread).

        Its thread is left to finish what it is handling, then ends without taking another
        message from the mailbox (the next incarnation's from now on: it never takes a wake-up
        token meant for its successor), without handing anything back to the mailbox and
        without an exit report. No stop request is queued, and ``on_stop`` is not called (as
        a killed Erlang process runs no ``terminate``): it would run at an unknown later time,
        beside the successor.
        """
        self._abandoned = True
        self.actor_stopped.set()

    def _thread_ended(self) -> bool:
        """Whether the thread has ended without reporting its exit (the watchdog's question)."""
        thread = self._thread
        return thread is not None and not thread.is_alive() and not self._exit_reported

    def _actor_loop(self) -> None:
        try:
            self._actor_loop_setup()
            self._ready.set()
            self._actor_loop_running()
        finally:
            try:
                self._actor_loop_teardown()
                self._on_exit()
            finally:
                self._ready.set()
                self._report_exit()

    def _actor_loop_running(self) -> None:
        # Pykka's loop, with macp envelopes (most messages) unwrapped and first.
        inbox, stopped, receive = self.actor_inbox, self.actor_stopped, self._handle_receive
        while not stopped.is_set():
            item: Any = inbox.get()
            try:
                if type(item) is Envelope:
                    receive(item)
                    continue
                response = receive(item.message)
                if item.reply_to is not None:
                    item.reply_to.set(response)
            except Exception:  # noqa: BLE001 - as Pykka: answered, or the actor fails
                if type(item) is not Envelope and item.reply_to is not None:
                    item.reply_to.set_exception()
                    continue
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:  # noqa: BLE001 - the actor is ending either way
                    self._handle_failure(*sys.exc_info())
            except BaseException:  # noqa: BLE001 - (KeyboardInterrupt, SystemExit): this actor ends
                self._handle_failure(*sys.exc_info())

    def _actor_loop_teardown(self) -> None:
        # Unlike Pykka's, this leaves the envelopes queued: they belong to the name, and the
        # next incarnation handles them (or the supervisor refuses them if the name is gone).
        inbox = self.actor_inbox
        assert isinstance(inbox, ActorInbox)
        answer_foreign(inbox.take_private(), self.name)

    def _on_exit(self) -> None:
        """Runs in the actor's thread after its last message, before the exit report."""

    def _report_exit(self) -> None:
        reason = self._exit_reason
        self._exit_reported = True
        if self._abandoned:  # replaced long ago: its end is news to nobody but the log
            self.log.info("agent.abandoned_ended", reason=repr(reason))
            return
        if self._parent is None:
            self.node._on_root_exit(reason)
            return
        try:
            self._parent.tell(ChildExited(self.name, self.actor_urn, reason))
        except pykka.ActorDeadError:
            if reason is not None:  # a parent that is stopping needs no report of a clean exit
                self.log.warning("actor.orphaned", reason=repr(reason))

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Replaces Pykka's: same effect (the actor stops), logged through structlog, and the
        # first reason kept for the exit report.
        if self._exit_reason is None:
            self._exit_reason = exception_value or (exception_type or RuntimeError)()
        if self._crash_expected:  # "let it crash": the reason is enough, no traceback
            self.log.warning("actor.crashed", error=repr(exception_value))
        else:
            self.log.error(
                "actor.crashed",
                error=repr(exception_value),
                exc_info=(exception_type, exception_value, traceback),
            )
        self.actor_stopped.set()
