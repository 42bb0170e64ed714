"""The part of :class:`~macp.cluster.Cluster` that watches the system: the journal's dead
letters, the monitor's figures, alerts and message rates, and the subscriptions to task
events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from macp.actors.coordinator import (
    DEAD_LETTERS,
    TASKS_SUBSCRIBE,
    TASKS_SUBSCRIBERS,
    TASKS_UNSUBSCRIBE,
)
from macp.actors.monitor import ALERTS as MONITOR_ALERTS
from macp.actors.monitor import METRICS as MONITOR_METRICS
from macp.actors.monitor import RATES as MONITOR_RATES
from macp.actors.task_events import DEFAULT_LEASE_S
from macp.cluster import _history
from macp.cluster._asks import Asks

if TYPE_CHECKING:
    from macp.envelope import Wire

__all__ = ["Observing"]


class Observing(Asks):
    """Dead letters, metrics, alerts, message rates and task events, for a class that asks the
    control plane (``_ask``, and ``_read`` for an ask safe to send again)."""

    # -- the journal --------------------------------------------------------------------------

    def dead_letters(self, limit: int = 10) -> dict[str, Any]:
        """The head journal's dead letters: records that could not be replayed, set aside.

        Returns:
            ``{"count", "kept", "newest"}``: how many there are, how many the journal keeps
            at most (the oldest go first), and the newest ``limit`` as ``{"id", "source",
            "key", "reason", "time_ms", "size"}``, newest first.
        """
        return dict(self._read("coordinator", DEAD_LETTERS, {"limit": limit}))

    # -- the gateway's runtime additions: metrics -----------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """The monitor's figures and the alerts firing now.

        Returns:
            ``{"metrics": {name: value}, "alerts": [rule]}``: every gauge of the last sample
            (see :mod:`macp.actors.metrics` for the names), and each alert rule that is firing,
            as ``monitor.rules`` describes it, with its metric's ``value``.
        """
        return {
            "metrics": dict(self._read("monitor", MONITOR_METRICS)),
            "alerts": list(self._read("monitor", MONITOR_ALERTS)),
        }

    def alerts(self) -> dict[str, Any]:
        """``{"active", "recent"}``: the rules firing now; the newest alert transitions first."""
        return _history.alerts(self._read)

    def message_rates(
        self, *, window_s: float = 60.0, flood_per_s: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each agent's messages over the last ``window_s``, from the counts its node reports
        to the registry with every heartbeat and the monitor samples (so they lag by about a
        heartbeat and a sample).

        Args:
            window_s: the window, in seconds (the monitor keeps ``history_size`` samples).
            flood_per_s: flag the agents taking more than this many messages a second.

        Returns:
            ``{address: {"messages", "rate_per_s", "span_s", "total", "flood"?}}``:
            messages taken (handled or failed) in the window, that count over ``window_s``,
            the seconds the samples cover, the count since the agent (re)started, and with
            ``flood_per_s`` whether ``rate_per_s`` is above it.

        Raises:
            InvalidParams: ``window_s`` or ``flood_per_s`` is not a positive number.
        """
        body = {"window_s": window_s, "flood_per_s": flood_per_s}
        return dict(self._read("monitor", MONITOR_RATES, body))

    # -- the gateway's runtime additions: task events -------------------------------------------

    def subscribe_tasks(self, address: str, *, lease_s: float = DEFAULT_LEASE_S) -> dict[str, Any]:
        """Tell ``address`` (``name@node``) a ``task.event`` at each change of any task's
        state, for ``lease_s`` seconds: ask again before it ends to keep it (a
        :class:`~macp.TaskEvents` agent does). Events are at most once, in transition order
        per task; see :mod:`macp.actors.coordinator.events`.

        Raises:
            InvalidParams: ``address`` is not ``name@node``, or ``lease_s`` is not above 0
                and at most an hour.
        """
        body: dict[str, Wire] = {"address": address, "lease_s": lease_s}
        return dict(self._ask("coordinator", TASKS_SUBSCRIBE, body))

    def unsubscribe_tasks(self, address: str) -> bool:
        """End ``address``'s subscription; ``False`` if it held none (or it had lapsed)."""
        body = {"address": address}
        return bool(self._ask("coordinator", TASKS_UNSUBSCRIBE, body)["unsubscribed"])

    def task_subscribers(self) -> list[dict[str, Any]]:
        """The subscribers to task events: ``[{"address", "lease_left_s"}]``."""
        return list(self._read("coordinator", TASKS_SUBSCRIBERS))
