"""macp: supervised Pykka actors that exchange msgpack envelopes, in one process or across hosts.

The public API is what this module exports; everything else is internal.
"""

from __future__ import annotations

from macp.actors.agent import Agent as Agent
from macp.actors.agent import handler as handler
from macp.actors.context import Context as Context
from macp.actors.context import Deferred as Deferred
from macp.actors.context import Subtask as Subtask
from macp.actors.task_events import TaskEvents as TaskEvents
from macp.actors.teams import SessionMember as SessionMember
from macp.address import Address as Address
from macp.cluster import Cluster as Cluster
from macp.cluster import Run as Run
from macp.cluster import Task as Task
from macp.cluster import connect as connect
from macp.commands import AgentState as AgentState
from macp.commands import Command as Command
from macp.control_plane import start_control_plane as start_control_plane
from macp.envelope import Envelope as Envelope
from macp.envelope import Kind as Kind
from macp.envelope import Priority as Priority
from macp.envelope import Wire as Wire
from macp.envelope import decode as decode
from macp.envelope import encode as encode
from macp.errors import ActorNotFound as ActorNotFound
from macp.errors import AgentError as AgentError
from macp.errors import AgentLost as AgentLost
from macp.errors import AskTimeout as AskTimeout
from macp.errors import Cancelled as Cancelled
from macp.errors import ConfigError as ConfigError
from macp.errors import DeadlockError as DeadlockError
from macp.errors import EnvelopeError as EnvelopeError
from macp.errors import InsufficientResources as InsufficientResources
from macp.errors import InternalError as InternalError
from macp.errors import InvalidParams as InvalidParams
from macp.errors import MacpError as MacpError
from macp.errors import NodeDown as NodeDown
from macp.errors import NotFound as NotFound
from macp.errors import PeerBroken as PeerBroken
from macp.errors import PeerClosed as PeerClosed
from macp.errors import PoisonMessage as PoisonMessage
from macp.errors import ProtocolError as ProtocolError
from macp.errors import RateLimited as RateLimited
from macp.errors import ResourceUnavailable as ResourceUnavailable
from macp.errors import StartFailed as StartFailed
from macp.errors import SupervisorEscalation as SupervisorEscalation
from macp.errors import TransportError as TransportError
from macp.errors import Unauthorized as Unauthorized
from macp.errors import UnknownMessageType as UnknownMessageType
from macp.futures import AskFuture as AskFuture
from macp.log import configure_logging as configure_logging
from macp.node import Node as Node
from macp.runtime import Ref as Ref
from macp.settings import Settings as Settings
from macp.settings import tune_gc as tune_gc
from macp.supervisor import ChildSpec as ChildSpec
from macp.supervisor import Restart as Restart
from macp.supervisor import Strategy as Strategy
from macp.supervisor import SupervisorSpec as SupervisorSpec
from macp.topologies.roles import Hub as Hub
from macp.topologies.roles import Peer as Peer

__version__ = "0.1.0"

__all__ = [
    "ActorNotFound",
    "Address",
    "Agent",
    "AgentError",
    "AgentLost",
    "AgentState",
    "AskFuture",
    "AskTimeout",
    "Cancelled",
    "ChildSpec",
    "Cluster",
    "Command",
    "ConfigError",
    "Context",
    "DeadlockError",
    "Deferred",
    "Envelope",
    "EnvelopeError",
    "Hub",
    "InsufficientResources",
    "InternalError",
    "InvalidParams",
    "Kind",
    "MacpError",
    "Node",
    "NodeDown",
    "NotFound",
    "Peer",
    "PeerBroken",
    "PeerClosed",
    "PoisonMessage",
    "Priority",
    "ProtocolError",
    "RateLimited",
    "Ref",
    "ResourceUnavailable",
    "Restart",
    "Run",
    "SessionMember",
    "Settings",
    "StartFailed",
    "Strategy",
    "Subtask",
    "SupervisorEscalation",
    "SupervisorSpec",
    "Task",
    "TaskEvents",
    "TransportError",
    "Unauthorized",
    "UnknownMessageType",
    "Wire",
    "configure_logging",
    "connect",
    "decode",
    "encode",
    "handler",
    "start_control_plane",
    "tune_gc",
]
