"""The ``macp`` command (:func:`main`; ``python -m macp`` runs it too)."""

from __future__ import annotations

from macp.cli._app import app as app
from macp.cli._app import main as main
from macp.cli._support import STOP_WITH_PARENT as STOP_WITH_PARENT

__all__ = ["STOP_WITH_PARENT", "app", "main"]
