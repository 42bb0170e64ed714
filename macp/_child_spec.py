"""Child specs: how a supervisor starts, and restarts, an actor or a nested supervisor.

Re-exported by :mod:`macp.supervisor` (and :mod:`macp`), where they are documented with the
supervisor that reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from macp._supervised import Supervised
from macp.address import check_name
from macp.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ChildSpec", "Restart", "Strategy", "SupervisorSpec"]


class Restart(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts, and restarts, one actor.

    Attributes:
        actor: the actor class (an :class:`~macp.Agent` subclass).
        name: the child's name, unique on its node; kept across restarts.
        args: positional arguments for the constructor.
        kwargs: keyword arguments for the constructor (an agent's ``config`` goes here).
        restart: ``permanent``, ``transient`` or ``temporary``.
        shutdown_s: how long the child gets to stop; ``None`` uses the node's setting.
    """

    actor: type[Supervised]
    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown_s: float | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "child")
        if not (isinstance(self.actor, type) and issubclass(self.actor, Supervised)):
            raise ConfigError(
                f"child {self.name!r}: actor must be an Agent subclass, not {self.actor!r}"
            )
        object.__setattr__(self, "restart", Restart(self.restart))


@dataclass(frozen=True)
class SupervisorSpec:
    """A nested supervisor and its children, started in the order given."""

    name: str
    children: Sequence[ChildSpec | SupervisorSpec] = ()
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within_s: float = 5.0
    restart: Restart = Restart.PERMANENT
    shutdown_s: float | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "supervisor")
        try:
            object.__setattr__(self, "strategy", Strategy(self.strategy))
            object.__setattr__(self, "restart", Restart(self.restart))
        except ValueError as e:
            raise ConfigError(
                f"supervisor {self.name!r}: {e}; strategy is one of "
                f"{', '.join(Strategy)} and restart one of {', '.join(Restart)}"
            ) from e
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ConfigError(f"supervisor {self.name!r}: max_restarts must be an integer >= 0")
        if not isinstance(self.within_s, int | float) or self.within_s <= 0:
            raise ConfigError(f"supervisor {self.name!r}: within_s must be a positive number")
        names = [c.name for c in self.children]
        if len(names) != len(set(names)):
            raise ConfigError(f"supervisor {self.name!r}: child names must be unique: {names}")
