"""Control commands every agent obeys, whatever it is doing.

A control command is an envelope of kind ``control`` and type ``control.<command>``, sent at
CRITICAL priority so it overtakes queued work. Every command is answered with a reply (its
result) or an error. All but RESTART are handled by the agent, between two messages, and
recorded in a bounded history that STATUS returns; RESTART is handled by the agent's
supervisor (the node hands it over before the mailbox), so it works on an agent stuck in a
handler.

=========  =========================================================================
START      accept work again after STOP (or PAUSE); held work is then handled.
STOP       refuse work: queued, held and new work is answered with
           ``ResourceUnavailable``. The actor stays alive, ready for START; ending
           the actor is its supervisor's job (``Node.terminate``).
PAUSE      hold incoming work, in order, without losing any.
RESUME     handle the held work in arrival order, then carry on.
CONFIGURE  call ``on_configure(params)``; if it returns, merge ``params`` into
           ``self.config``. Returns the new config.
STATUS     return state, counters, queue depth, held count, last error and the last
           commands.
RESET      call ``on_reset()``, zero the counters and forget the last error.
RESTART    (the supervisor) stop this incarnation and start a fresh one under the
           same name, with the same mailbox: queued work is kept. One that does not
           stop within its shutdown timeout (at most half the command's time left) is
           abandoned: its thread is left to finish its handler on its own. Returns
           ``{incarnation, previous, abandoned}``, once the registry has the new one.
           Does not count toward the supervisor's restart intensity.
=========  =========================================================================
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING, Any, ClassVar, Final

from macp.commands import COMMAND_PREFIX, AgentState, Command
from macp.errors import InvalidParams, UnknownMessageType

if TYPE_CHECKING:
    from macp._inbox import PriorityInbox
    from macp.envelope import Envelope, Wire
    from macp.runtime import NodeRuntime

__all__ = ["Controls"]

_HISTORY: Final = 32


class Controls:
    """The control half of :class:`~macp.actors.agent.Agent` (runs in the agent's thread)."""

    if TYPE_CHECKING:
        name: str
        address: str
        state: AgentState
        node: NodeRuntime
        config: dict[str, Any]
        capabilities: ClassVar[tuple[str, ...]]
        role: ClassVar[str | None]
        _held: deque[Envelope]

        @property
        def inbox(self) -> PriorityInbox: ...
        def _handle_receive(self, message: object) -> object: ...
        def _answer(self, env: Envelope, answer: Envelope) -> None: ...
        def _refuse(self, env: Envelope, exc: BaseException) -> None: ...
        def on_configure(self, params: dict[str, Wire]) -> None: ...
        def on_reset(self) -> None: ...

    def _init_controls(self) -> None:
        self.counters: Counter[str] = Counter()  # failed, expired (handled: an attribute)
        self.handled = 0
        self.last_error: str | None = None
        self.commands: deque[dict[str, Wire]] = deque(maxlen=_HISTORY)

    def status(self) -> dict[str, Wire]:
        """What STATUS returns."""
        return {
            "name": self.name,
            "address": self.address,
            "state": self.state.value,
            "capabilities": list(self.capabilities),
            "role": self.role,
            "queue_depth": self.inbox.depth(),
            "held": len(self._held),
            "counters": self._counts(),
            "last_error": self.last_error,
            "last_commands": list(self.commands),
        }

    def _counts(self) -> dict[str, int]:
        failed = self.counters["failed"]
        counts = {"received": self.handled + failed, "handled": self.handled, "failed": failed}
        counts.update(self.counters)
        return {k: v for k, v in counts.items() if v}

    def _on_control(self, env: Envelope) -> None:
        try:
            command = Command(env.type.removeprefix(COMMAND_PREFIX))
        except ValueError:
            known = ", ".join(c.value for c in Command)
            self._refuse(
                env, UnknownMessageType(f"unknown control command {env.type!r}; known: {known}")
            )
            return
        params = {} if env.body is None else env.body
        entry: dict[str, Wire] = {"command": command.value, "src": env.src, "ts": env.ts}
        before = self.state
        try:
            result = self._run_command(command, params)
        except Exception as exc:  # noqa: BLE001 - a failed command is answered, never fatal
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            self.commands.append(entry)
            self._refuse(env, exc)
            return
        entry["ok"] = True
        self.commands.append(entry)
        answer = env.reply(result, self.address)
        changed = self.node._agent_changed(self.address) if self.state is not before else None
        if changed is None:
            self._answer(env, answer)
        else:  # answered once the registry (and so routing) knows the new state
            changed.add_done_callback(lambda _: self._answer(env, answer))
        while self.state is AgentState.RUNNING:
            try:  # not `while self._held`: a supervisor abandoning this agent may empty it
                held = self._held.popleft()
            except IndexError:
                break
            self._handle_receive(held)

    def _run_command(self, command: Command, params: Wire) -> Wire:
        if not isinstance(params, dict):
            raise InvalidParams(f"control.{command} takes a map of params, not {params!r:.80}")
        result: Wire = getattr(self, f"_control_{command.value}")(params)
        return result

    def _control_start(self, _params: dict[str, Wire]) -> Wire:
        self.state = AgentState.RUNNING
        return {"state": self.state.value}

    _control_resume = _control_start

    def _control_stop(self, _params: dict[str, Wire]) -> Wire:
        self.state = AgentState.STOPPED
        held, self._held = self._held, deque()
        for env in held:
            self._handle_receive(env)  # refused now that the agent is stopped
        return {"state": self.state.value}

    def _control_pause(self, _params: dict[str, Wire]) -> Wire:
        self.state = AgentState.PAUSED
        return {"state": self.state.value}

    def _control_configure(self, params: dict[str, Wire]) -> Wire:
        self.on_configure(params)
        self.config.update(params)
        return {"config": self.config}

    def _control_status(self, _params: dict[str, Wire]) -> Wire:
        return self.status()

    def _control_reset(self, _params: dict[str, Wire]) -> Wire:
        self.on_reset()
        self.counters.clear()
        self.handled = 0
        self.last_error = None
        return self.status()
