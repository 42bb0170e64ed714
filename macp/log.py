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
from typing import Any

import structlog

__all__ = ["configure_logging", "get_logger"]


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
