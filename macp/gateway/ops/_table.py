"""The one table every operation module adds itself to (see :mod:`macp.gateway.ops`)."""

from __future__ import annotations

from macp.gateway.table import Table

__all__ = ["OPERATIONS"]

OPERATIONS = Table()
