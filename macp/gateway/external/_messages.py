"""The messages of the external-agent protocol, checked: what a program sends, and how a
message that does not fit is named back to it in one sentence."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field, field_validator

from macp.address import check_name
from macp.errors import ConfigError, InvalidParams, MacpError
from macp.schema import Schema, check

__all__ = [
    "CLOSE_INVALID",
    "CLOSE_TAKEN",
    "CLOSE_UNAUTHORIZED",
    "Fail",
    "Progress",
    "Register",
    "Result",
    "parse",
]

CLOSE_INVALID: Final = 4400
"""The WebSocket close code for a ``register`` message that does not fit."""
CLOSE_UNAUTHORIZED: Final = 4401
"""The close code for a missing, wrong or under-privileged key."""
CLOSE_TAKEN: Final = 4409
"""The close code for a name another agent holds."""

Name = Annotated[str, Field(min_length=1, max_length=200)]


class Register(Schema):
    """The first message: who the program is and what it runs."""

    type: Literal["register"]
    name: Name
    """The agent's name, unique on the gateway's node (its address is ``name@node``)."""
    capabilities: list[Name] = Field(default_factory=list)
    """What the agent can do: the registry finds it by these."""
    handles: list[Name] | None = None
    """The task types it runs (default: its capabilities)."""
    role: Name | None = None
    group: Name | None = None
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    """What it says about itself (language, version, ...), shown in the registry."""
    key: str | None = None
    """The agent API key (none on a gateway without authentication)."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        try:
            return check_name(name, "agent")
        except ConfigError as e:
            raise ValueError(str(e)) from None


class Result(Schema):
    """A task's result: the reply to the coordinator."""

    type: Literal["result"]
    task_id: Name
    attempt: Annotated[int, Field(strict=True, ge=1)]
    result: Any = None


class Fail(Schema):
    """A task the program could not run: the attempt fails (and is retried, unless ``code``
    says the input is bad: -32602)."""

    type: Literal["error"]
    task_id: Name
    attempt: Annotated[int, Field(strict=True, ge=1)]
    message: str
    code: Annotated[int, Field(strict=True)] = -32001
    data: dict[str, Any] = Field(default_factory=dict)


class Progress(Schema):
    """How far a task has come, for its status."""

    type: Literal["progress"]
    task_id: Name
    attempt: Annotated[int, Field(strict=True, ge=1)] | None = None
    """Which attempt (default: the latest in hand)."""
    fraction: Annotated[float, Field(ge=0, le=1)]
    message: str = ""


def parse(raw: object) -> Result | Fail | Progress:
    """One message from a connected program, checked.

    Raises:
        InvalidParams: it is not a map with a known ``type``, or a field does not fit (named).
    """
    if not isinstance(raw, dict):
        raise InvalidParams(f"a message must be a JSON object, not {type(raw).__name__}")
    kind = raw.get("type")
    if kind == "result":
        return check(Result, raw, "result", InvalidParams)
    if kind == "error":
        return check(Fail, raw, "error", InvalidParams)
    if kind == "progress":
        return check(Progress, raw, "progress", InvalidParams)
    raise InvalidParams(f"'type' must be one of result, error, progress, not {kind!r}")


def register_of(raw: object) -> Register:
    """The ``register`` message, checked.

    Raises:
        InvalidParams: a field does not fit (named in the message).
    """
    return check(Register, raw, "register", InvalidParams)


def error_message(exc: MacpError, about: str | None = None) -> dict[str, Any]:
    """``exc`` as the protocol's ``error`` message (``about``: the message type it answers)."""
    data = {"error": type(exc).__name__, **exc.data}
    message: dict[str, Any] = {"type": "error", "code": exc.code, "message": str(exc), "data": data}
    if about is not None:
        message["about"] = about
    return message
