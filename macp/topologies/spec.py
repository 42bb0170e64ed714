"""The topology file: a YAML description of nodes, agents, supervision, the topology's shape,
resource pools, workflows and settings, validated into :class:`TopologySpec`.

Environment variables may be used in any value as ``${NAME}`` or ``${NAME:-default}``
(upper-case names; unset or empty takes the default; ``${input}`` and ``${deps.x}`` are left
alone for workflow templates). Every error names
the file, the line and the field, and says what is expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import Field, ValidationError

from macp.actors.coordinator.dag import Workflow  # noqa: TC001 - pydantic reads the annotation at run time
from macp.actors.coordinator.dispatch import CoordinatorOptions
from macp.actors.coordinator.retention import JournalRetention
from macp.actors.monitor import MonitorOptions
from macp.errors import ConfigError
from macp.schema import Location, Schema, field_path, problems
from macp.supervisor import Restart, Strategy

__all__ = ["AgentSpec", "NodeSpec", "TopologySpec", "load_spec", "parse_spec"]

_ENV: Final = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


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


def _line(root: yaml.Node | None, loc: Location) -> int:
    """The line (1-based) of the deepest YAML node along ``loc`` that exists."""
    node, line = root, 1
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


class _Problems:
    """Collected errors, each as ``FILE:LINE: FIELD: what is wrong``."""

    def __init__(self, path: str, root: yaml.Node | None) -> None:
        self.path, self.root = path, root
        self.found: list[tuple[int, str]] = []

    def add(self, loc: Location, message: str) -> None:
        self.found.append((_line(self.root, loc), f"{field_path(loc)}: {message}"))

    def raise_if_any(self) -> None:
        """Raise them all, in the order of their lines in the file."""
        if self.found:
            ordered = sorted(self.found, key=lambda found: found[0])
            raise ConfigError("\n".join(f"{self.path}:{line}: {what}" for line, what in ordered))


class _Loader(yaml.SafeLoader):
    """A safe loader that puts environment variables into string scalars as it builds them.

    Substituting after parsing keeps a value's ``: `` or ``#`` from changing the document, and
    leaves comments alone. A plain (unquoted) scalar is typed again after substitution, so
    ``port: ${PORT:-5555}`` is an integer, as if the number had been written in the file.
    """

    def __init__(self, text: str, path: str) -> None:
        super().__init__(text)
        self.path = path

    def substitute(self, node: yaml.ScalarNode) -> Any:
        value = self.construct_scalar(node)
        if "${" not in value:
            return value

        def lookup(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found:  # unset or empty takes the default, as the shell's ${NAME:-default}
                return found
            if default is not None:
                return default
            if found is not None:
                return found
            raise ConfigError(
                f"{self.path}:{node.start_mark.line + 1}: environment variable {name} is not "
                f"set; set it, or write ${{{name}:-default}}"
            )

        text = _ENV.sub(lookup, value)
        if node.style is not None or text == value:
            return text
        tag = self.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        return self.yaml_constructors[tag](self, yaml.ScalarNode(tag, text, node.start_mark))


_Loader.add_constructor("tag:yaml.org,2002:str", _Loader.substitute)


def _compose(text: str, path: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data, with variables substituted."""
    loader = _Loader(text, path)
    try:
        root = loader.get_single_node()
        return root, None if root is None else loader.construct_document(root)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem_mark", None)
        context = getattr(e, "context_mark", None)
        # An unclosed quote or bracket is found at the end of the file; name where it opened.
        at_end = problem is not None and problem.index >= len(text.rstrip())
        mark = context if at_end and context is not None else problem
        line = mark.line + 1 if mark is not None else 1
        what = getattr(e, "problem", None) or e
        if mark is context and getattr(e, "context", None):
            opened = str(e.context).removeprefix("while scanning ")  # type: ignore[attr-defined]
            what = f"{opened} starts here and is never closed"
        raise ConfigError(f"{path}:{line}: not valid YAML: {what}") from e
    finally:
        loader.dispose()


def parse_spec(text: str, path: str = "<topology>") -> TopologySpec:
    """Validate a topology given as YAML text.

    Raises:
        ConfigError: one line per problem, each naming the file, line and field.
    """
    root, data = _compose(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a topology file is a map with name, nodes and agents")
    found = _Problems(path, root)
    try:
        spec = TopologySpec.model_validate(data)
    except ValidationError as e:
        for loc, message in problems(TopologySpec, e):
            found.add(loc, message)
        found.raise_if_any()
        raise  # pragma: no cover - errors() is never empty
    spec.path = path
    from macp.topologies.checks import check  # noqa: PLC0415 - the checks import builders

    check(spec, found.add)
    found.raise_if_any()
    return spec


def load_spec(path: str | os.PathLike[str]) -> TopologySpec:
    """Read and validate a topology file.

    Raises:
        ConfigError: the file cannot be read, or one line per problem in it.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read topology file {file}: {e.strerror}") from e
    return parse_spec(text, str(file))
