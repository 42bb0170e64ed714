"""What macp exports (trio's test_exports, in small): every public name imports, every public
error is exported and crosses the wire as itself, and nothing private leaks."""

from __future__ import annotations

import types

import pytest

import macp
from macp import errors
from macp.errors import error_body, error_from_body


def _error_classes() -> list[type[macp.MacpError]]:
    """Every error class macp defines (the whole tree under MacpError)."""
    found: list[type[macp.MacpError]] = []
    pending: list[type[macp.MacpError]] = [macp.MacpError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("macp.") and not cls.__name__.startswith("_"):
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda cls: cls.__name__)


ERRORS = _error_classes()


@pytest.mark.parametrize("name", macp.__all__)
def test_every_public_name_imports_from_macp(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from macp import {name}", namespace)  # the statement users write
    assert namespace[name] is getattr(macp, name)


def test_nothing_private_leaks_into_the_public_names() -> None:
    assert [name for name in macp.__all__ if name.startswith("_")] == []
    assert macp.__all__ == sorted(set(macp.__all__))


def test_every_name_the_package_binds_is_public_or_a_module() -> None:
    bound = {
        name
        for name, value in vars(macp).items()
        if not name.startswith("__")
        and not isinstance(value, types.ModuleType)  # macp.node, macp.errors, ... (submodules)
        and name != "annotations"  # from __future__ import annotations
    }
    assert bound == set(macp.__all__)


def test_the_error_tree_is_what_the_design_says() -> None:
    assert ERRORS[0] is macp.ActorNotFound
    assert {cls.__name__ for cls in ERRORS} >= {
        "MacpError", "ConfigError", "ProtocolError", "AgentError", "ResourceUnavailable",
        "AskTimeout", "DeadlockError", "Unauthorized", "InternalError", "TransportError",
        "PeerClosed", "PeerBroken", "NodeDown",
    }  # fmt: skip


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_is_exported_from_errors_and_from_macp(cls: type[macp.MacpError]) -> None:
    assert cls.__name__ in errors.__all__
    assert cls.__name__ in macp.__all__
    assert getattr(macp, cls.__name__) is cls


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_round_trips_as_itself(cls: type[macp.MacpError]) -> None:
    again = error_from_body(error_body(cls("it broke", data={"where": ["here", 1]})))
    assert type(again) is cls
    assert (again.message, again.data, again.code) == ("it broke", {"where": ["here", 1]}, cls.code)
