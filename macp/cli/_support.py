"""What the ``macp`` commands share: failing with one sentence, reading JSON flags."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer

__all__ = ["STOP_WITH_PARENT", "fail", "parse_json"]

STOP_WITH_PARENT = "MACP_STOP_WITH_PARENT"
"""The environment variable naming the process whose end stops a ``macp node start``."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` to standard error and exit with ``code`` (2: bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def parse_json(text: str | None, flag: str) -> Any:
    """``text`` parsed as JSON, or exit 2 naming ``flag`` and where the JSON breaks."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"{flag} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}")
