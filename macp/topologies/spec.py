"""The topology file's schema: nodes, agents, supervision, the topology's shape, resource
pools, workflows and settings, validated into :class:`TopologySpec` (read from a file by
:mod:`macp.topologies.load`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from macp.actors.coordinator.dag import Workflow  # noqa: TC001 - pydantic reads the annotation at run time
from macp.actors.coordinator.dispatch import CoordinatorOptions
from macp.actors.coordinator.retention import JournalRetention
from macp.actors.monitor import MonitorOptions
from macp.schema import Schema
from macp.supervisor import Restart, Strategy

if TYPE_CHECKING:
    import os

__all__ = ["AgentSpec", "GatewaySpec", "NodeSpec", "TopologySpec"]


class NodeSpec(Schema):
    """One node: one ``macp node start`` process."""

    name: str
    """Unique in the file; the ``@node`` of its agents' addresses."""
    listen: str
    """``tcp://HOST:PORT`` it listens on (port 0: ``macp up`` picks a free one)."""
    head: bool = False
    """Whether it runs the control plane (default: the first node)."""
    keys: str | None = None
    """A keys directory (relative to the file): CURVE encryption and the allow-list."""
    insecure: bool = False
    """Allow plaintext on a non-loopback address."""


def _version_text(value: object) -> object:
    """A model version written as a number (``model_version: 2``) is its text (``"2"``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class AgentSpec(Schema):
    """An agent, and its replicas."""

    name: str
    """Unique in the file; replicas are NAME-1, NAME-2, ..."""
    class_: str = Field(alias="class")
    """Its class, as ``package.module:Class``."""
    node: str | list[str] | None = None
    """The node, or nodes its replicas are spread over in turn (default: the head)."""
    replicas: Annotated[int, Field(ge=1)] = 1
    """How many instances to run."""
    capabilities: list[str] | None = None
    """What it can do, for routing (default: its class's)."""
    role: str | None = None
    """A role name, for routing (default: its class's)."""
    group: str | None = None
    """A group, for control commands sent to ``group:NAME``."""
    model_type: str | None = None
    """The model it runs on, e.g. ``llm`` (default: its class's ``model_type``)."""
    model_version: Annotated[str, BeforeValidator(_version_text)] | None = None
    """That model's version, e.g. ``"2"`` (a number is read as its text; default: its
    class's ``model_version``)."""
    config: dict[str, Any] = Field(default_factory=dict)
    """The agent's ``self.config``."""
    restart: Restart = Restart.PERMANENT
    """permanent (always restarted), transient (after a crash only) or temporary (never)."""

    def nodes(self, head: str) -> list[str]:
        return [self.node] if isinstance(self.node, str) else (self.node or [head])

    def instances(self, head: str) -> list[tuple[str, str]]:
        """``(instance name, node)`` for each replica, spread over the agent's nodes."""
        nodes = self.nodes(head)
        if self.replicas == 1:
            return [(self.name, nodes[0])]
        return [(f"{self.name}-{i + 1}", nodes[i % len(nodes)]) for i in range(self.replicas)]


class SupervisionSpec(Schema):
    """How each node's supervisor restarts its agents."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    """one_for_one, one_for_all or rest_for_one."""
    max_restarts: Annotated[int, Field(ge=0)] = 3
    """Restarts allowed within ``within_seconds``; past them the node gives up (exit 1)."""
    within_seconds: Annotated[float, Field(gt=0)] = 5.0
    """The window ``max_restarts`` counts in."""


class HubAndSpoke(Schema):
    """A hub (a ``macp.Hub``) splits each task among its spokes and merges their results."""

    kind: Literal["hub-and-spoke"]
    hub: str
    """The hub agent."""
    spokes: list[str]
    """The agents that work on the parts."""


class PeerToPeer(Schema):
    """Peers (``macp.Peer``) that find each other in the registry and ask for help."""

    kind: Literal["peer-to-peer"]
    peers: list[str]
    """The peer agents."""
    entry: str
    """The task type a submitted task is sent as (some peer handles it)."""


class Stage(Schema):
    """One stage of an assembly line."""

    agent: str
    """The agent that works on the stage."""
    mode: Literal["each", "all"] = "each"
    """each: one task per item, pipelined; all: one task for the whole value."""
    max_in_flight: Annotated[int, Field(ge=1)] | None = None
    """Items in the stage at once (default: twice the agent's replicas)."""


class AssemblyLine(Schema):
    """Items flow stage to stage, the output of one the input of the next."""

    kind: Literal["assembly-line"]
    stages: list[Stage | str]
    """The stages in order: a Stage, or an agent's name."""


class Hierarchical(Schema):
    """A tree of leads (``macp.Hub``) and workers, decomposing and merging at each level."""

    kind: Literal["hierarchical"]
    root: str
    """The agent a submitted task goes to."""
    tree: dict[str, list[str]]
    """Each lead's children."""


class SettingsSpec(Schema):
    """Every node's runtime settings (see ``macp.Settings``)."""

    heartbeat_interval_s: Annotated[float, Field(gt=0)] = 1.0
    """Seconds between two heartbeats to each peer."""
    heartbeat_misses: Annotated[int, Field(ge=1)] = 3
    """Heartbeats missed before a peer is down (plus ``acceptable_pause_s``)."""
    acceptable_pause_s: Annotated[float, Field(ge=0)] = 1.0
    """Extra silence tolerated before a peer is down."""
    ask_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """The default timeout of an ask."""
    shutdown_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """How long an actor may take to start or stop."""
    abandon_grace_s: Annotated[float, Field(gt=0)] = 5.0
    """How long past its deadline a handler may run before its agent is restarted."""
    max_message_bytes: Annotated[int, Field(gt=0)] = 10 * 1024 * 1024
    """The largest payload (a packed body) a message may carry."""
    journal: str | None = None
    """The control plane's SQLite journal, relative to the file's folder (default:
    $MACP_DATA_DIR/NAME/journal.sqlite3, else .macp/NAME/journal.sqlite3 beside the file)."""
    journal_retention: JournalRetention = Field(default_factory=JournalRetention)
    """How long the journal keeps finished tasks and runs, and their idempotency keys."""
    strict: bool = False
    """Round-trip every local message through msgpack (no shared mutable objects)."""


_HostPort = Annotated[str, Field(pattern=r"^[^\s:/]+:\d{1,5}$")]


def _env_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(
            "not an environment variable's name (it is not shown, in case it is a secret): give "
            "the NAME of the variable that holds the secret, e.g. MY_SECRET"
        )
    return name


class GatewaySpec(Schema):
    """What the gateway may do, and where it listens."""

    spawnable: list[str] = Field(default_factory=list)
    """Agent classes (``package.module:Class``) that may be spawned on the file's nodes at
    run time (``node.spawn``, ``Cluster.spawn``); each must import and be an Agent."""
    jsonrpc: _HostPort | None = None
    """The JSON-RPC listener, ``HOST:PORT``."""
    mcp_http: _HostPort | None = None
    """The MCP (streamable HTTP) listener, ``HOST:PORT``."""
    http: _HostPort | None = None
    """The HTTP listener (REST at /api/v1, /health, /ready, MCP at /mcp, /ws), ``HOST:PORT``."""
    jwt_key_file: str | None = None
    """The key bearer tokens are checked with (relative to the file): a secret, or a PEM
    public key."""
    jwt_secret_env: Annotated[str, AfterValidator(_env_name)] | None = None
    """The NAME of the environment variable holding the tokens' secret (never the secret)."""
    jwt_audience: str = "macp-gateway"
    """The audience (aud) tokens must name."""
    jwt_issuer: str = "macp"
    """The issuer (iss) tokens must name."""
    keys_db: str | None = None
    """The API key store (relative to the file)."""
    audit_db: str | None = None
    """The audit log (relative to the file; default: the data folder's
    ``gateway/audit.sqlite3``)."""
    tls_cert: str | None = None
    """Serve the HTTP listeners as HTTPS with this certificate (relative to the file)."""
    tls_key: str | None = None
    """The ``tls_cert``'s private key (relative to the file)."""
    rate_per_principal: Annotated[int, Field(ge=0)] = 200
    """Operations one principal may call a second (0: no limit)."""
    rate_per_connection: Annotated[int, Field(ge=0)] = 100
    """Requests one connection may send a second (0: no limit)."""
    submissions_per_min: Annotated[int, Field(ge=0)] = 120
    """Tasks and workflow runs one principal may submit a minute (0: no limit)."""
    websockets_per_principal: Annotated[int, Field(ge=0)] = 16
    """WebSockets one principal may hold open at once (0: no limit)."""

    @property
    def serves(self) -> bool:
        """Whether it names a listener (then ``macp up`` starts the gateway)."""
        return any(a is not None for a in (self.jsonrpc, self.mcp_http, self.http))


Topology = Annotated[
    HubAndSpoke | PeerToPeer | AssemblyLine | Hierarchical, Field(discriminator="kind")
]


class TopologySpec(Schema):
    """A whole topology file, validated."""

    name: str
    """The topology's name (its journal's directory by default)."""
    nodes: Annotated[list[NodeSpec], Field(min_length=1)]
    """Its nodes, one process each."""
    agents: list[AgentSpec] = Field(default_factory=list)
    """Its agents, placed on the nodes."""
    supervision: SupervisionSpec = Field(default_factory=SupervisionSpec)
    """How agents are restarted."""
    topology: Topology | None = None
    """Its shape, by ``kind``, and so what ``macp run --task`` does."""
    resources: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """The resource manager's pools and their capacities."""
    workflows: list[Workflow] = Field(default_factory=list)
    """Workflows defined at start (see ``macp.actors.coordinator.dag``)."""
    monitor: MonitorOptions = Field(default_factory=MonitorOptions)
    """The monitor's options and alert rules."""
    coordinator: CoordinatorOptions = Field(default_factory=CoordinatorOptions)
    """The coordinator's options."""
    settings: SettingsSpec = Field(default_factory=SettingsSpec)
    """Runtime settings of every node."""
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    """The gateway: the classes its nodes let others spawn, and its listeners."""
    path: str = Field(default="", exclude=True)

    @property
    def folder(self) -> Path:
        """The absolute folder of the file, that every path in it is relative to (the current
        directory for text that came from no file)."""
        if not self.path or self.path.startswith("<"):
            return Path.cwd()
        return Path(self.path).absolute().parent

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """A path written in the file, made absolute from the file's folder."""
        return self.folder / Path(path).expanduser()

    @property
    def head(self) -> NodeSpec:
        return next((n for n in self.nodes if n.head), self.nodes[0])

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def agent(self, name: str) -> AgentSpec:
        return next(a for a in self.agents if a.name == name)

    def placement(self) -> list[tuple[str, AgentSpec, str]]:
        """``(instance, agent spec, node)`` for every agent instance."""
        head = self.head.name
        return [(inst, a, node) for a in self.agents for inst, node in a.instances(head)]

    def addresses(self, agent: str) -> list[str]:
        """The addresses of an agent's instances."""
        head = self.head.name
        return [f"{inst}@{node}" for inst, node in self.agent(agent).instances(head)]
