"""The Monitor actor: how the system is doing, in numbers, with alerts and Prometheus.

It gathers task and workflow outcomes from the coordinator (batched, a few times a second),
agents' load and mailbox depth from the registry, and each node's process figures (cpu,
memory, open sockets and files, from psutil) from the nodes themselves. Every ``sample_s`` it
computes the gauges (see :mod:`.metrics` for their names), keeps a bounded history, and checks
the alert rules; an ``alert`` message ``{rule, metric, value, op, threshold, state}`` (state
``firing`` or ``resolved``) goes to every subscriber. With ``prometheus_port`` set, the same
figures are served at ``http://ADDR:PORT/metrics``.

Messages: ``monitor.samples`` (from the coordinator), ``monitor.metrics`` -> ``{name: value}``,
``monitor.history`` ``{metric, since_s}`` -> ``[[ts_ms, value], ...]``, ``monitor.rules``,
``monitor.alerts`` -> the rules firing now, each with the metric's ``value``,
``monitor.alert_log`` -> ``{active, recent}``: those (with their ``rule`` name), and the
newest alert transitions first
(at most :data:`RECENT_ALERTS`, each ``{rule, metric, value, op, threshold, state, time_ms}``),
``monitor.rates`` ``{window_s, flood_per_s?}`` -> each agent's messages over the window (see
:meth:`Monitor.rates`), ``monitor.add_rule`` (a rule), ``monitor.subscribe`` ``{address}``,
``monitor.prometheus`` -> ``{port}``.
"""

from __future__ import annotations

import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Final, NamedTuple

from pydantic import Field

from macp._storable import is_number
from macp.actors.agent import Agent, handler
from macp.actors.metrics import BUCKETS_S, History, Outcomes, Rule, RuleSpec, metric_name
from macp.actors.registry import CONTROL_PLANE, LIST
from macp.envelope import Wire, now_ms
from macp.errors import ConfigError, InvalidParams, MacpError
from macp.schema import Schema, check

if TYPE_CHECKING:
    from collections.abc import Iterator

    from macp.futures import AskFuture

__all__ = [
    "ALERT", "ALERTS", "ALERT_LOG", "METRICS", "RATES", "RECENT_ALERTS", "SAMPLES", "Monitor",
    "MonitorOptions",
]  # fmt: skip

SAMPLES: Final = "monitor.samples"
METRICS: Final = "monitor.metrics"
HISTORY: Final = "monitor.history"
RULES: Final = "monitor.rules"
ALERTS: Final = "monitor.alerts"
ALERT_LOG: Final = "monitor.alert_log"
RECENT_ALERTS: Final = 200
"""Alert transitions (firing, resolved) the monitor keeps, newest first."""
RATES: Final = "monitor.rates"
ADD_RULE: Final = "monitor.add_rule"
SUBSCRIBE: Final = "monitor.subscribe"
PROMETHEUS: Final = "monitor.prometheus"
ALERT: Final = "alert"
_MESSAGES: Final = "agent.messages"  # each agent's messages taken, from its registry record


class MonitorOptions(Schema):
    """The monitor's settings: a topology file's ``monitor:`` section, and
    ``start_control_plane(monitor=...)``."""

    sample_s: Annotated[float, Field(strict=True, gt=0)] = Field(
        default=1.0, description="Seconds between two samples of every figure (and rule checks)."
    )
    window_s: Annotated[float, Field(strict=True, gt=0)] = Field(
        default=60.0,
        description="Seconds over which throughput, error rates and percentiles are taken.",
    )
    history_size: Annotated[int, Field(strict=True, ge=1)] = Field(
        default=3600, description="Samples kept per metric for monitor.history."
    )
    rules: list[RuleSpec] = Field(default_factory=list, description="Alert rules.")
    prometheus_port: Annotated[int, Field(strict=True, ge=0, le=65535)] | None = Field(
        default=None, description="Serve /metrics for Prometheus on this port (0: any free one)."
    )
    prometheus_addr: str = Field(
        default="127.0.0.1", description="The address prometheus_port listens on."
    )


class _Sample(NamedTuple):
    pass


class _Polled(NamedTuple):
    kind: str
    key: str
    value: Any


class Monitor(Agent):
    """Metrics, history, alerts (one per cluster, on the head node, named ``monitor``).

    Config: the :class:`MonitorOptions`, and ``registry`` (address, default ``registry`` on
    this node).
    """

    capabilities = ("monitor",)
    group = CONTROL_PLANE

    def on_start(self) -> None:
        cfg = self.config
        given = {k: v for k, v in cfg.items() if k in MonitorOptions.model_fields}
        options = check(MonitorOptions, given, "monitor", ConfigError)
        self.sample_s = options.sample_s
        self.window_s = options.window_s
        self.history = History(options.history_size)
        self.registry = str(cfg.get("registry") or f"registry@{self.node.name}")
        self.outcomes: dict[str, Outcomes] = {}  # by "tasks{type=...}", "agent{agent=...}", ...
        self.polled: dict[str, float] = {}
        self.polled_at: dict[str, float] = {}  # a figure not refreshed for 3 samples is dropped
        self.gauges: dict[str, float] = {}
        self.rules = [Rule.of(r) for r in options.rules]
        self.subscribers: set[str] = set()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_ALERTS)  # newest at the left
        self.server: Any = None
        self.timer = self.node.scheduler.call_every(self.sample_s, self._tell_self, _Sample())
        if options.prometheus_port is not None:
            self._serve_prometheus(options.prometheus_port, options.prometheus_addr)

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc: object) -> None:
        self._close()

    def _close(self) -> None:
        self.timer.cancel()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def _receive(self, message: Any) -> Any:
        if isinstance(message, _Sample):
            return self._sample()
        if isinstance(message, _Polled):
            return self._polled(message)
        return super()._receive(message)

    # -- intake -------------------------------------------------------------------------------

    @handler(SAMPLES)
    def samples(self, body: dict[str, Any]) -> None:
        """Outcomes ``{tasks: [{type, agent, ok, duration_ms}], workflows: [{workflow, ok,
        duration_ms}], gauges: {name: value}}`` from the coordinator."""
        now = time.monotonic()
        for task in body.get("tasks") or []:
            duration = float(task.get("duration_ms", 0)) / 1000
            ok = bool(task["ok"])
            self._outcomes(metric_name("tasks", type=task["type"])).add(now, ok, duration)
            if task.get("agent"):  # a task that never reached an agent counts for its type only
                self._outcomes(metric_name("agent", agent=task["agent"])).add(now, ok, duration)
        for run in body.get("workflows") or []:
            key = metric_name("workflow", workflow=run["workflow"])
            self._outcomes(key).add(now, bool(run["ok"]), float(run.get("duration_ms", 0)) / 1000)
        gauges = {name: float(value) for name, value in (body.get("gauges") or {}).items()}
        self.polled.update(gauges)
        self.polled_at.update(dict.fromkeys(gauges, now))

    def _outcomes(self, key: str) -> Outcomes:
        found = self.outcomes.get(key)
        if found is None:
            found = self.outcomes[key] = Outcomes(self.window_s)
        return found

    def _polled(self, polled: _Polled) -> None:
        figures: dict[str, float] = {}
        if polled.kind == "agents":
            for record in polled.value:
                if record.get("status") != "offline":
                    name = metric_name("agent.mailbox_depth", agent=record["address"])
                    figures[name] = float(record.get("load", 0))
                    taken = metric_name(_MESSAGES, agent=record["address"])
                    figures[taken] = float(record.get("messages", 0))
        elif polled.kind == "node":
            for measure, value in (polled.value.get("metrics") or {}).items():
                figures[metric_name(f"node.{measure}", node=polled.key)] = float(value)
        now = time.monotonic()
        self.polled.update(figures)
        self.polled_at.update(dict.fromkeys(figures, now))

    def _poll(self) -> None:
        """Ask the registry and every node for fresh figures (answers come back as messages)."""
        try:
            future = self.node.ask(self.registry, LIST, timeout_s=self.sample_s)
        except MacpError:
            return
        future.add_done_callback(self._on_agents)
        self._polled(_Polled("node", self.node.name, self.node.info()))

    def _on_agents(self, future: AskFuture) -> None:
        if future.exception() is not None:
            return
        records = future.result()
        self._tell_self(_Polled("agents", "", records))
        for node in sorted({r["node"] for r in records} - {self.node.name}):
            try:
                info = self.node.ask_node(node, "node.info", timeout_s=self.sample_s)
            except MacpError:
                continue
            info.add_done_callback(partial(self._on_node_info, node))

    def _on_node_info(self, node: str, future: AskFuture) -> None:
        if future.exception() is None:
            self._tell_self(_Polled("node", node, future.result()))

    # -- each sample --------------------------------------------------------------------------

    def _sample(self) -> None:
        now = time.monotonic()
        stale = [k for k, at in self.polled_at.items() if at < now - 3 * self.sample_s - 1]
        for name in stale:  # a node or agent that stopped answering: its figures go
            del self.polled[name], self.polled_at[name]
        gauges = dict(self.polled)
        for key, outcomes in self.outcomes.items():
            measure, brace, labels = key.partition("{")
            for name, value in outcomes.gauges(now).items():
                gauges[f"{measure}.{name}{brace}{labels}"] = value
            gauges[f"{measure}.succeeded{brace}{labels}"] = float(outcomes.ok)
            gauges[f"{measure}.failed{brace}{labels}"] = float(outcomes.failed)
        self.gauges = gauges
        self.history.record(now_ms(), gauges)
        for rule in self.rules:
            change = rule.evaluate(gauges.get(rule.metric), now)
            if change is not None:
                self._alert(rule, gauges.get(rule.metric), change)
        self._poll()

    def _alert(self, rule: Rule, value: float | None, state: str) -> None:
        alert = {"rule": rule.name, "metric": rule.metric, "value": value, "op": rule.op,
                 "threshold": rule.threshold, "state": state, "ts": now_ms()}  # fmt: skip
        self.recent.appendleft({**alert, "time_ms": alert["ts"]})
        self.log.warning("monitor.alert", **alert) if state == "firing" else self.log.info(
            "monitor.alert", **alert
        )
        for subscriber in sorted(self.subscribers):
            self.tell(subscriber, ALERT, alert)

    # -- questions ----------------------------------------------------------------------------

    @handler(METRICS)
    def metrics(self, _body: Wire) -> Wire:
        return dict(sorted(self.gauges.items()))

    @handler(HISTORY)
    def history_of(self, body: Wire) -> Wire:
        if not isinstance(body, dict) or not isinstance(body.get("metric"), str):
            raise InvalidParams("monitor.history needs a 'metric' name and 'since_s'")
        since_s = body.get("since_s", 60)
        if isinstance(since_s, bool) or not isinstance(since_s, int | float):
            raise InvalidParams("'since_s' must be a number of seconds")
        return self.history.since(body["metric"], now_ms() - int(since_s * 1000))

    @handler(RULES)
    def list_rules(self, _body: Wire) -> Wire:
        return [rule.describe() for rule in self.rules]

    @handler(ALERTS)
    def alerts(self, _body: Wire) -> Wire:
        """The rules firing now, each with its metric's latest ``value``."""
        gauges = self.gauges
        return [{**r.describe(), "value": gauges.get(r.metric)} for r in self.rules if r.firing]

    @handler(ALERT_LOG)
    def alert_log(self, _body: Wire) -> Wire:
        """``{active, recent}``: the rules firing now, and the newest transitions first."""
        recent = [{k: v for k, v in a.items() if k != "ts"} for a in self.recent]
        gauges = self.gauges
        active = [{**r.describe(), "rule": r.name, "value": gauges.get(r.metric)}
                  for r in self.rules if r.firing]  # fmt: skip
        return {"active": active, "recent": recent}

    @handler(RATES)
    def rates(self, body: Wire) -> Wire:
        """Each agent's messages taken over the last ``window_s`` (its registry record's count,
        sampled): ``{address: {messages, rate_per_s, span_s, total}}``, where ``rate_per_s`` is
        ``messages / window_s``, ``span_s`` how much of the window the samples cover and
        ``total`` the count since the agent started; with ``flood_per_s``, also ``flood``:
        whether ``rate_per_s`` is above it."""
        window_s = body.get("window_s") if isinstance(body, dict) else None
        flood_per_s = body.get("flood_per_s") if isinstance(body, dict) else None
        if not is_number(window_s) or window_s <= 0:
            raise InvalidParams(f"'window_s' must be a number of seconds > 0, not {window_s!r}")
        if flood_per_s is not None and (not is_number(flood_per_s) or flood_per_s < 0):
            raise InvalidParams(f"'flood_per_s' must be a number >= 0, not {flood_per_s!r}")
        oldest_ms = now_ms() - int(window_s * 1000)
        prefix = f"{_MESSAGES}{{agent="
        found: dict[str, Wire] = {}
        for name, series in self.history.series.items():
            if not name.startswith(prefix) or not series or series[-1][0] < oldest_ms:
                continue
            grown, span_ms = self.history.increase(name, oldest_ms)
            rate: dict[str, Wire] = {
                "messages": int(grown), "rate_per_s": grown / window_s,
                "span_s": span_ms / 1000, "total": int(series[-1][1]),
            }  # fmt: skip
            if flood_per_s is not None:
                rate["flood"] = grown / window_s > flood_per_s
            found[name[len(prefix) : -1]] = rate
        return found

    @handler(ADD_RULE)
    def add_rule(self, body: Wire) -> Wire:
        rule = Rule.parse(body)
        self.rules = [r for r in self.rules if r.name != rule.name] + [rule]
        return rule.describe()

    @handler(SUBSCRIBE)
    def add_subscriber(self, body: Wire) -> Wire:
        """Tell ``address`` every alert from now on."""
        if not isinstance(body, dict) or not isinstance(body.get("address"), str):
            raise InvalidParams("monitor.subscribe needs the 'address' to tell")
        self.subscribers.add(body["address"])
        return {"subscribed": body["address"]}

    @handler(PROMETHEUS)
    def prometheus(self, _body: Wire) -> Wire:
        return {"port": self.server.server_port if self.server is not None else None}

    # -- Prometheus ---------------------------------------------------------------------------

    def _serve_prometheus(self, port: int, addr: str) -> None:
        from prometheus_client import CollectorRegistry, start_http_server  # noqa: PLC0415

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        self.server, _thread = start_http_server(port, addr=addr, registry=registry)
        self.log.info("monitor.prometheus", addr=addr, port=self.server.server_port)


class _Collector:
    """Prometheus exposition of the monitor's figures (runs on the HTTP server's thread, so
    it reads only the snapshots the monitor replaces whole)."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        outcomes = dict(self._monitor.outcomes)
        done = CounterMetricFamily(
            "macp_completions", "Completions by kind", labels=["kind", "name", "outcome"]
        )
        durations = HistogramMetricFamily(
            "macp_duration_seconds", "Completion durations", labels=["kind", "name"]
        )
        for key, stats in outcomes.items():
            kind, _, rest = key.partition("{")
            name = rest.rstrip("}").partition("=")[2]
            done.add_metric([kind, name, "ok"], stats.ok)
            done.add_metric([kind, name, "failed"], stats.failed)
            buckets = [(str(bound) if bound != float("inf") else "+Inf", count)
                       for bound, count in zip(BUCKETS_S, stats.buckets, strict=True)]  # fmt: skip
            durations.add_metric([kind, name], buckets, stats.duration_sum_s)
        yield done
        yield durations
        families: dict[str, Any] = {}
        for metric, value in dict(self._monitor.gauges).items():
            measure, _, rest = metric.partition("{")
            labels = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if part)
            prom = "macp_" + measure.replace(".", "_")
            family = families.get(prom)
            if family is None:
                family = families[prom] = GaugeMetricFamily(prom, measure, labels=sorted(labels))
            family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()
