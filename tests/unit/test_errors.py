"""Errors cross a process boundary as envelope bodies and come back as the same class."""

from __future__ import annotations

import pytest

import macp
from macp import errors
from macp.envelope import decode, encode
from macp.errors import error_body, error_from_body

ALL = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_survives_the_wire_as_its_own_class(cls: type[macp.MacpError]) -> None:
    original = cls("it went wrong", data={"missing": {"gpu": 1}})
    ask = macp.Envelope.new(macp.Kind.ASK, "t", "a@n", "b@n")
    body = decode(encode(ask.error(original))).body
    again = error_from_body(body)
    assert type(again) is cls
    assert (again.message, again.data, again.code) == (
        "it went wrong",
        {"missing": {"gpu": 1}},
        cls.code,
    )


def test_codes_follow_the_design() -> None:
    assert {cls.__name__: cls.code for cls in ALL if cls.__bases__[0] is macp.MacpError} == {
        "ConfigError": -32002,
        "ProtocolError": -32600,
        "AgentError": -32001,
        "ResourceUnavailable": -32003,
        "AskTimeout": -32004,
        "Cancelled": -32007,
        "RateLimited": -32000,  # JSON-RPC's server-error range, with data.retry_after_s
        "DeadlockError": -32005,
        "Unauthorized": -32006,
        "InternalError": -32603,
        "SupervisorEscalation": -32603,
        "StartFailed": -32603,
        "TransportError": -32603,
    }
    assert macp.UnknownMessageType.code == -32601
    assert macp.InvalidParams.code == -32602


def test_an_unknown_class_name_falls_back_to_its_code() -> None:
    error = error_from_body({"code": -32003, "error": "QuotaExceeded", "message": "m", "data": {}})
    assert type(error) is macp.ResourceUnavailable


def test_a_foreign_exception_becomes_an_agent_error_naming_it() -> None:
    error = error_from_body(error_body(KeyError("text")))
    assert isinstance(error, macp.AgentError)
    assert (error.remote_type, error.remote_message) == ("KeyError", "'text'")


@pytest.mark.parametrize("body", [None, "x", {"code": "1"}, {"message": "m"}])
def test_a_malformed_error_body_becomes_an_internal_error(body: object) -> None:
    assert type(error_from_body(body)) is macp.InternalError  # type: ignore[arg-type]
