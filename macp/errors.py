"""One exception hierarchy for macp.

Every class carries the JSON-RPC style ``code`` of the design, so an error raised in one process
can travel as an ``error`` envelope and be raised again, as the same class, in another:
:func:`error_body` turns an exception into an envelope body and :func:`error_from_body` turns
the body back into an exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from collections.abc import Mapping

    from macp.wire import Wire

__all__ = [
    "ActorNotFound",
    "AgentError",
    "AgentLost",
    "AskTimeout",
    "Cancelled",
    "ConfigError",
    "DeadlockError",
    "EnvelopeError",
    "InsufficientResources",
    "InternalError",
    "InvalidParams",
    "MacpError",
    "NodeDown",
    "NotFound",
    "PeerBroken",
    "PeerClosed",
    "PoisonMessage",
    "ProtocolError",
    "RateLimited",
    "ResourceUnavailable",
    "StartFailed",
    "SupervisorEscalation",
    "TransportError",
    "Unauthorized",
    "UnknownMessageType",
    "error_body",
    "error_from_body",
    "plain_error_body",
]


class MacpError(Exception):
    """Base of every error macp raises; ``code`` is its JSON-RPC style error code."""

    code: ClassVar[int] = -32603

    def __init__(self, message: str = "", *, data: Mapping[str, Wire] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, Wire] = dict(data or {})


class ConfigError(MacpError):
    """Bad input from a user (YAML, CLI flag, API argument); the message names the field and fix."""

    code = -32002


class ProtocolError(MacpError):
    """A peer broke the protocol: an invalid request or frame."""

    code = -32600


class EnvelopeError(ProtocolError):
    """Bytes or a record that is not a valid envelope; the message says why in one line."""


class ActorNotFound(ProtocolError):
    """No actor of that name lives on the addressed node (never started, stopped, or restarting)."""


class UnknownMessageType(ProtocolError):
    """The receiving agent has no handler for the message type."""

    code = -32601


class InvalidParams(ProtocolError):
    """The message body does not fit what the handler expects, or cannot be encoded."""

    code = -32602


class NotFound(InvalidParams):
    """What a request names (a task, a workflow run, a pipeline) does not exist; HTTP answers
    it 404. Its code is invalid params' (-32602): over JSON-RPC and MCP it is a bad argument."""


class AgentError(MacpError):
    """A handler raised; ``remote_type`` and ``remote_message`` describe the original error."""

    code = -32001

    @property
    def remote_type(self) -> str:
        value = self.data.get("remote_type")
        return value if isinstance(value, str) else type(self).__name__

    @property
    def remote_message(self) -> str:
        value = self.data.get("remote_message")
        return value if isinstance(value, str) else self.message


class PoisonMessage(AgentError):
    """A task failed or crashed its agents ``max_retries`` times and will not be tried again."""


class ResourceUnavailable(MacpError):
    """The asked-for resource (an agent, a pool, a lock) is not available now."""

    code = -32003


class InsufficientResources(ResourceUnavailable):
    """An allocation could not be granted in full; ``data['missing']`` says what is short."""


class AskTimeout(MacpError):
    """No reply arrived before the ask's deadline."""

    code = -32004


class DeadlockError(MacpError):
    """The ask would wait on an actor that already waits on this call (its ``chain``)."""

    code = -32005


class Unauthorized(MacpError):
    """The peer is not allowed to do this."""

    code = -32006


class Cancelled(MacpError):
    """The task was cancelled before it finished (code -32007, an addition to the design's)."""

    code = -32007


class RateLimited(MacpError):
    """Over a rate limit or quota (code -32000, an addition to the design's): ``data`` holds
    ``retry_after_s``, the seconds after which the same call is admitted again (1 s when it
    was not said)."""

    code = -32000

    def __init__(
        self,
        message: str = "",
        *,
        retry_after_s: float | None = None,
        data: Mapping[str, Wire] | None = None,
    ) -> None:
        given = {} if retry_after_s is None else {"retry_after_s": retry_after_s}
        super().__init__(message, data={**given, **(data or {})})

    @property
    def retry_after_s(self) -> float:
        after = self.data.get("retry_after_s")
        return float(after) if isinstance(after, int | float) else 1.0


class InternalError(MacpError):
    """A failure inside macp itself; a bug worth reporting."""

    code = -32603


class SupervisorEscalation(MacpError):
    """A supervisor exceeded its restart intensity and gave up; the reason travels upward."""


class StartFailed(MacpError):
    """A child's ``on_start`` raised or did not finish in time, so it was not added (as OTP's
    ``start_child`` answers an error): a spawn of a broken agent fails, the node lives on."""


class TransportError(MacpError):
    """The connection to a peer node cannot carry the message."""


class PeerClosed(TransportError):
    """The local side closed the transport; nothing more can be sent through it."""


class PeerBroken(TransportError):
    """The other side or an outside event broke the link; ``__cause__`` holds the cause."""


class NodeDown(PeerBroken):
    """The addressed node is down (missed heartbeats or unreachable); retry after ``node.up``."""


class AgentLost(NodeDown):
    """The agent went away with the message in hand, as if its node had gone down: an external
    agent's program closed its connection to the gateway (it exited, crashed or lost the
    network). Nothing the agent chose: a task lost so counts as a node failure, not against its
    ``max_retries``. ``data["agent"]`` names the agent."""


def _known_classes() -> dict[str, type[MacpError]]:
    found: dict[str, type[MacpError]] = {}
    pending: list[type[MacpError]] = [MacpError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


_BY_CODE: dict[int, type[MacpError]] = {
    -32600: ProtocolError,
    -32601: UnknownMessageType,
    -32602: InvalidParams,
    -32603: InternalError,
    -32001: AgentError,
    -32002: ConfigError,
    -32003: ResourceUnavailable,
    -32004: AskTimeout,
    -32005: DeadlockError,
    -32006: Unauthorized,
    -32007: Cancelled,
    -32000: RateLimited,
}


def error_body(exc: BaseException) -> dict[str, Wire]:
    """Describe ``exc`` as the body of an ``error`` envelope.

    A :class:`MacpError` keeps its class name, code and data; any other exception (a bug or a
    refusal in a user's handler) becomes an :class:`AgentError` that names the original type.
    """
    if isinstance(exc, MacpError):
        return {
            "code": exc.code,
            "error": type(exc).__name__,
            "message": exc.message,
            "data": exc.data,
        }
    return {
        "code": AgentError.code,
        "error": AgentError.__name__,
        "message": f"{type(exc).__name__}: {exc}",
        "data": {"remote_type": type(exc).__name__, "remote_message": str(exc)},
    }


def plain_error_body(body: Wire) -> dict[str, Wire]:
    """``body`` (an error envelope's) with its data dropped and its text made encodable: what
    is sent instead of an error whose data or message could not cross nodes."""
    fields = body if isinstance(body, dict) else {}
    code, name, message = fields.get("code"), fields.get("error"), fields.get("message")
    text = message if isinstance(message, str) else repr(body)
    return {
        "code": code if type(code) is int else InternalError.code,
        "error": name if isinstance(name, str) and name.isidentifier() else "InternalError",
        "message": text.encode("utf-8", "backslashreplace").decode("utf-8"),
        "data": {},
    }


def error_from_body(body: Wire) -> MacpError:
    """Rebuild the exception an ``error`` envelope describes.

    The class is found by name when this process knows it and its code matches, else by code;
    a body that is not a valid error description becomes an :class:`InternalError`.
    """
    if not isinstance(body, dict):
        return InternalError(f"malformed error body: {body!r:.200}")
    code, name, message, data = (body.get(k) for k in ("code", "error", "message", "data"))
    if not isinstance(code, int) or not isinstance(message, str):
        return InternalError(f"malformed error body: {body!r:.200}")
    cls = _known_classes().get(name) if isinstance(name, str) else None
    if cls is None or cls.code != code:
        cls = _BY_CODE.get(code, InternalError)
    return cls(message, data=data if isinstance(data, dict) else None)
