"""Operations about the gateway itself: ``ping``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.envelope import now_ms
from macp.gateway.ops._table import OPERATIONS
from macp.gateway.table import Params, Scope

if TYPE_CHECKING:
    from macp.gateway.bridge import Runtime

__all__ = ["Ping"]


class Ping(Params):
    """No parameters."""


@OPERATIONS.operation("ping", Ping, Scope.READ, "Check the gateway answers: status and time.")
async def ping(_runtime: Runtime, _params: Ping) -> dict[str, Any]:
    return {"status": "ok", "timestamp": now_ms()}
