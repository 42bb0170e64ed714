"""The dashboard's session rules on requests as Starlette builds them from an ASGI scope: the
cookie's credential, the CSRF header a state-changing cookie request needs, and the gateway's
own Origin (http and https pages, WebSocket handshakes over ws and wss)."""

from __future__ import annotations

import pytest
from starlette.requests import HTTPConnection, Request

from macp.errors import Unauthorized
from macp.gateway.dashboard.session import (
    check_csrf,
    check_local,
    credential_of,
    own_origin,
)


def connection(
    headers: dict[str, str], *, scheme: str = "http", kind: str = "http", method: str = "GET"
) -> HTTPConnection:
    scope = {
        "type": kind, "scheme": scheme, "method": method, "path": "/", "query_string": b"",
        "server": ("127.0.0.1", 8080), "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    return Request(scope) if kind == "http" else HTTPConnection(scope)


def test_the_cookie_holds_the_credential_and_an_empty_one_is_none() -> None:
    assert credential_of(connection({"Cookie": "macp_session=tok; other=1"})) == "tok"
    assert credential_of(connection({"Cookie": "macp_session="})) is None
    assert credential_of(connection({"Cookie": "other=1"})) is None


@pytest.mark.parametrize(
    ("origin", "scheme", "kind", "own"),
    [
        ("http://127.0.0.1:8080", "http", "http", True),
        ("http://127.0.0.1:8080/", "http", "http", True),
        ("HTTP://127.0.0.1:8080", "http", "http", True),
        ("https://127.0.0.1:8080", "https", "http", True),
        ("http://127.0.0.1:8080", "https", "http", False),  # the scheme is part of it
        ("http://127.0.0.1:8080", "ws", "websocket", True),
        ("https://127.0.0.1:8080", "wss", "websocket", True),
        ("http://127.0.0.1:9090", "http", "http", False),
        ("http://elsewhere.example", "http", "http", False),
        ("null", "http", "http", False),
    ],
)
def test_own_origin_is_the_scheme_and_host_the_request_was_sent_to(
    origin: str, scheme: str, kind: str, own: bool
) -> None:
    headers = {"Host": "127.0.0.1:8080", "Origin": origin}
    assert own_origin(connection(headers, scheme=scheme, kind=kind)) is own


def test_no_origin_or_no_host_is_not_the_gateways_own() -> None:
    assert own_origin(connection({"Host": "127.0.0.1:8080"})) is False
    assert own_origin(connection({"Origin": "http://127.0.0.1:8080"})) is False


def test_a_cookie_request_that_changes_state_needs_the_csrf_header() -> None:
    for method in ("GET", "HEAD", "OPTIONS"):
        check_csrf(method, connection({}))
    check_csrf("POST", connection({"X-MACP-CSRF": "1"}))
    with pytest.raises(Unauthorized, match=r"^a request authenticated by the session cookie that "
                       r"changes state must carry the header 'X-MACP-CSRF: 1'"):  # fmt: skip
        check_csrf("DELETE", connection({}))


def test_without_authentication_only_another_sites_page_is_refused() -> None:
    own = {"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:8080"}
    evil = {"Host": "127.0.0.1:8080", "Origin": "http://evil.example"}
    check_local("POST", connection(own))
    check_local("POST", connection({"Host": "127.0.0.1:8080"}))  # not a browser: no Origin
    check_local("GET", connection(evil))
    refused = r"^a request from another site's page \(http://evil\.example\) may not change state"
    with pytest.raises(Unauthorized, match=refused):
        check_local("POST", connection(evil))
