"""What every part of :class:`~macp.cluster.Cluster` asks the control plane with: the base of
its mixins (``_workflows``, ``_observing``, ``_evaluating``, ``_delegating``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from macp.envelope import Wire

__all__ = ["Asks"]


class Asks:
    """A part of the cluster's API: ``_ask`` (once) and ``_read`` (an ask safe to send again,
    sent again across a restart of the head), both :class:`~macp.cluster.Cluster`'s."""

    if TYPE_CHECKING:

        def _ask(
            self, actor: str, type: str, body: Wire = None, timeout_s: float | None = None
        ) -> Any: ...
        def _read(
            self, actor: str, type: str, body: Wire = None, timeout_s: float | None = None
        ) -> Any: ...
