"""Runtime settings of a node: timeouts, limits and the strict setting.

Every value has a unit in its name; a bad value raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field, fields

from macp.errors import ConfigError
from macp.wire import DEFAULT_MAX_BYTES

__all__ = ["Settings", "tune_gc"]


def _strict_from_env() -> bool:
    return os.environ.get("MACP_STRICT", "").lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class Settings:
    """How one node behaves.

    Attributes:
        strict: round-trip every local message through msgpack, so no handler shares a mutable
            object with its sender (like Akka's ``serialize-messages``); the payload rule holds
            without it. Defaults to the ``MACP_STRICT`` environment variable.
        max_message_bytes: the largest payload (a packed body) a message may carry, refused by
            its sender above it; frames may hold 64 KiB more, for the rest of the envelope.
        ask_timeout_s: the default time an ``ask`` waits for its reply.
        shutdown_timeout_s: the default time a child gets to stop before it is abandoned.
        supervisor_check_interval_s: how often supervisors look for children whose thread died
            or whose handler is overdue.
        abandon_grace_s: how long past its deadline (for a coordinator's task: past the task's
            timeout) a handler may run before its agent is abandoned and restarted. The
            default, like ``shutdown_timeout_s``, leaves a handler that is about to finish, or
            a clock a few seconds off another host's, alone; an agent stuck for good is back
            within its deadline plus this plus one check interval.
        heartbeat_interval_s: how often nodes tell each other they are alive.
        heartbeat_misses: missed intervals after which a silent peer is down.
        acceptable_pause_s: extra silence tolerated before a peer is down (a busy host's pause).
        send_hwm: queued outbound messages per peer before sends block (ZeroMQ SNDHWM).
        recv_hwm: queued inbound messages before the peer is slowed (ZeroMQ RCVHWM).
    """

    strict: bool = field(default_factory=_strict_from_env)
    max_message_bytes: int = DEFAULT_MAX_BYTES
    ask_timeout_s: float = 5.0
    shutdown_timeout_s: float = 5.0
    supervisor_check_interval_s: float = 1.0
    abandon_grace_s: float = 5.0
    heartbeat_interval_s: float = 1.0
    heartbeat_misses: int = 3
    acceptable_pause_s: float = 1.0
    send_hwm: int = 100_000
    recv_hwm: int = 100_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "strict":
                if not isinstance(value, bool):
                    raise ConfigError(f"settings.strict must be true or false, not {value!r}")
            elif f.type == "int" and (type(value) is not int or value <= 0):
                raise ConfigError(
                    f"settings.{f.name} must be a positive whole number, not {value!r}; "
                    f"use a value such as {f.default!r}"
                )
            elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(
                    f"settings.{f.name} must be a positive number, not {value!r}; "
                    f"use a value such as {f.default!r}"
                )


def tune_gc(first_threshold: int = 50_000) -> None:
    """Tune CPython's garbage collector for a process that runs a node (``macp node start``
    does; an embedding program may).

    Everything allocated so far (modules, classes, the node's own structures) is frozen, never
    scanned again, and the youngest generation is collected every ``first_threshold``
    allocations instead of every 700. A burst of messages waiting in mailboxes is then not
    scanned over and over while it is queued: on the cross-node tell benchmark the receiving
    node handles about 1.7 times as many messages per second. Cyclic garbage lives a little
    longer. This changes the whole process, so the library never calls it by itself.
    """
    if type(first_threshold) is not int or first_threshold < 1:
        raise ConfigError(
            f"tune_gc's first_threshold must be a whole number >= 1, not {first_threshold!r}; "
            "use e.g. 50000"
        )
    gc.collect()
    gc.freeze()
    gc.set_threshold(first_threshold, 20, 100)
