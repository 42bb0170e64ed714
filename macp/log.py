"""Logging set-up for programs (the ``macp`` command); the library itself configures nothing.

Embedders configure structlog themselves; every macp log line carries ``node`` and, where
known, ``actor``, ``msg_id`` and ``task_id``.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Configure structlog for a program: console on a terminal, JSON lines otherwise.

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
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
