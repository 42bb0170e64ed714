"""Handlers: the :func:`handler` decorator, and the table of a class's handlers by message type.

An agent class's table is built once, when the class is defined (:func:`handler_table`): each
entry is the function and whether it takes a :class:`~macp.actors.context.Context`, so
dispatch costs one dict lookup and no signature inspection.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar

from macp.commands import COMMAND_PREFIX
from macp.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TASK_ACK", "TASK_RUN", "Handler", "handler", "handler_table", "mark"]

TASK_RUN: Final = "task.run"
"""A coordinator's assignment ``{task_id, attempt, type, body, timeout_s?, context?}``; the
reply is the result. ``context`` is the task's contextual data (the handler's
``ctx.context``). ``timeout_s`` is the attempt's (the ask waits longer, for a late reply): a
handler still running ``abandon_grace_s`` past it is abandoned."""
TASK_ACK: Final = "task.ack"

_F = TypeVar("_F", bound="Callable[..., Any]")
_HANDLES: Final = "__macp_handles__"
_WITH_CONTEXT: Final = 3  # (self, body, ctx)


def handler(type: str) -> Callable[[_F], _F]:
    """Declare the decorated method the handler of messages of ``type``.

    Raises:
        ConfigError: ``type`` is empty, not a string, or in the reserved ``control.`` space.
    """
    if not isinstance(type, str) or not type or type.startswith(COMMAND_PREFIX) or type == TASK_RUN:
        raise ConfigError(
            f"@handler needs a non-empty message type outside 'control.*' and {TASK_RUN!r}, "
            f"not {type!r}"
        )
    return mark(type)


def mark(type: str) -> Callable[[_F], _F]:
    """:func:`handler` without its checks: for the runtime's own reserved types."""

    def marked(fn: _F) -> _F:
        setattr(fn, _HANDLES, type)
        return fn

    return marked


class Handler(NamedTuple):
    fn: Callable[..., Any]
    wants_ctx: bool


def _wants_ctx(fn: Callable[..., Any]) -> bool:
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(params) >= _WITH_CONTEXT


def handler_table(cls: type) -> dict[str, Handler]:
    """``cls``'s handlers by message type, a subclass's overriding its bases'.

    Raises:
        ConfigError: one class declares two handlers for the same type.
    """
    table: dict[str, Handler] = {}
    for klass in reversed(cls.__mro__):
        seen: dict[str, str] = {}
        for attr, value in vars(klass).items():
            type_ = getattr(value, _HANDLES, None)
            if type_ is None:
                continue
            if type_ in seen:
                raise ConfigError(
                    f"{klass.__qualname__} declares two handlers for {type_!r} "
                    f"({seen[type_]} and {attr}); keep one"
                )
            seen[type_] = attr
            fn = getattr(cls, attr)
            table[type_] = Handler(fn, _wants_ctx(fn))
    return table
