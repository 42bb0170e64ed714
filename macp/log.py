"""Logging set-up for programs (the ``macp`` command) and a quiet default for scripts.

Embedders configure structlog themselves, before their first node starts; a program that has
not gets warnings and errors on standard error (structlog's own default would print every
record to standard output). Every macp log line carries ``node`` and, where known, ``actor``,
``msg_id`` and ``task_id``.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging", "default_logging"]


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


def default_logging() -> None:
    """Show warnings and errors on standard error, unless structlog is configured already."""
    if not structlog.is_configured():
        configure_logging(level="warning")
