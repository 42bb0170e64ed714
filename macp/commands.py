"""The control vocabulary: the commands every agent obeys, and the states they move it between.

Below the agent and the node alike: the node checks a command's name before it sends it, the
agent (:mod:`macp.actors.control`) runs it. What each command does is documented there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from macp.errors import ConfigError

__all__ = ["COMMAND_PREFIX", "AgentState", "Command"]

COMMAND_PREFIX: Final = "control."
"""The prefix of a control command's envelope type (``control.pause``)."""


class Command(StrEnum):
    """The control commands; the envelope type is ``control.<value>``."""

    START = "start"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    CONFIGURE = "configure"
    STATUS = "status"
    RESET = "reset"
    RESTART = "restart"

    @property
    def type(self) -> str:
        return COMMAND_PREFIX + self.value

    @classmethod
    def named(cls, name: str) -> Command:
        """The command called ``name``.

        Raises:
            ConfigError: there is none of that name (the message lists them).
        """
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(cls)
            raise ConfigError(f"unknown control command {name!r}; use one of: {known}") from None


class AgentState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
