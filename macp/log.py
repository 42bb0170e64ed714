"""Logging: macp's loggers, and the set-up a program (the ``macp`` command) may use.

macp logs with structlog, through the standard library's ``logging`` (loggers named
``macp.*``), and configures neither: records take the program's structlog processors, and go
wherever its ``logging`` set-up sends them. A program that sets up nothing sees warnings and
errors on standard error (``logging``'s last resort) and nothing on standard output.
:func:`configure_logging` is one set-up for programs. Every macp log line carries ``node`` and,
where known, ``actor``, ``msg_id`` and ``task_id``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final

import structlog

__all__ = ["Throttle", "configure_logging", "get_logger"]


def get_logger(name: str) -> Any:
    """A structlog logger writing to the standard library's logger ``name`` (``macp.node``...)."""
    return structlog.wrap_logger(logging.getLogger(name))


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Configure structlog and ``logging`` for a program: every record on standard error, on
    the console renderer on a terminal, as JSON lines otherwise.

    Args:
        json: force JSON lines (``True``) or the console renderer (``False``); by default
            JSON unless standard error is a terminal.
        level: the lowest level shown (``debug``, ``info``, ``warning``, ``error``).
    """
    use_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        processors.append(structlog.processors.dict_tracebacks)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))  # rendered by structlog already
    logging.basicConfig(handlers=[handler], level=level.upper(), force=True)


_MAX_KEYS: Final = 1024


class Throttle:
    """Bounded-rate logging per key (a peer, say), so that a flood of bad input costs a few
    lines, not one line per item: each key may log ``burst`` lines at once, then ``rate_per_s``
    lines a second; what it could not log is counted and reported with its next line, or by
    :meth:`quiet` once the key has gone quiet.

    At most ``max_keys`` keys are tracked (a flood from many made-up names shares one key,
    ``"*"``). Not thread-safe: one owner thread (the transport's I/O thread) uses it.

    Example::

        throttle.warn(log, peer, "envelope.rejected", peer=peer, reason=reason)
    """

    __slots__ = ("_burst", "_keys", "_max_keys", "_rate")

    def __init__(self, rate_per_s: float = 1.0, burst: int = 5, max_keys: int = _MAX_KEYS) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_keys = max_keys
        # key -> [tokens, last refill (monotonic s), suppressed since the last line]
        self._keys: dict[str, list[float]] = {}

    def admit(self, key: str, now: float | None = None) -> int | None:
        """Whether an event of ``key`` may be logged now: ``None`` if not (it is counted),
        else how many of its events were suppressed since its last line."""
        now = time.monotonic() if now is None else now
        state = self._keys.get(key)
        if state is None:
            if len(self._keys) >= self._max_keys:
                return self.admit("*", now) if key != "*" else None
            state = self._keys[key] = [self._burst, now, 0.0]
        tokens = min(self._burst, state[0] + (now - state[1]) * self._rate)
        state[1] = now
        if tokens < 1.0:
            state[0] = tokens
            state[2] += 1
            return None
        state[0] = tokens - 1.0
        suppressed, state[2] = int(state[2]), 0.0
        return suppressed

    def warn(self, log: Any, key: str, event: str, /, **fields: Any) -> None:
        """Log ``event`` with ``fields`` at warning on ``log``, if ``key`` may log now (with
        ``suppressed``: how many of its events were not logged since its last line)."""
        suppressed = self.admit(key)
        if suppressed is not None:
            log.warning(event, suppressed=suppressed, **fields)

    def quiet(self, now: float | None = None) -> list[tuple[str, int]]:
        """The keys with suppressed events that have been quiet for the time of one token
        (``1 / rate_per_s``), and how many each suppressed; they are forgotten (call it now and
        then, to log a last ``suppressed`` count after a flood)."""
        now = time.monotonic() if now is None else now
        window = 1.0 / self._rate
        done = [key for key, state in self._keys.items() if now - state[1] >= window]
        out: list[tuple[str, int]] = []
        for key in done:
            suppressed = int(self._keys.pop(key)[2])
            if suppressed:
                out.append((key, suppressed))
        return out
