"""The dashboard's session cookie: how a browser, which cannot send a bearer header when it
navigates, proves who it is to the page, the REST API and the WebSocket.

``/login`` checks a credential (a JWT or an API key) with the guard and sets it as the cookie
:data:`COOKIE`: ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
sends it), ``Secure`` under TLS. The guard checks it again on every request, so an expired
token or a revoked key ends the session. Two more rules keep another site from acting with it:

- a cookie-authenticated request that changes state (any method but GET, HEAD and OPTIONS)
  must carry the header :data:`CSRF_HEADER` (a cross-site form cannot send a custom header);
- the WebSocket takes the cookie at the handshake only when the ``Origin`` header is the
  gateway's own address.

On a gateway with no authentication, every request is the local user's: one that changes
state sent by another site's page (a browser's ``Origin`` not the gateway's) is refused
(:func:`check_local`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from macp.errors import Unauthorized

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.responses import Response

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "check_csrf",
    "check_local",
    "clear_cookie",
    "credential_of",
    "own_origin",
    "set_cookie",
]

COOKIE: Final = "macp_session"
"""The session cookie's name."""
CSRF_HEADER: Final = "X-MACP-CSRF"
"""The header a cookie-authenticated request that changes state must carry (any value)."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
"""The methods that change nothing."""


def credential_of(connection: HTTPConnection) -> str | None:
    """The credential the session cookie holds, if the request (or handshake) has one."""
    value = connection.cookies.get(COOKIE)
    return value.strip() or None if value is not None else None


def check_csrf(method: str, connection: HTTPConnection) -> None:
    """Refuse a cookie-authenticated ``method`` that changes state without :data:`CSRF_HEADER`.

    Raises:
        Unauthorized: it changes state and the header is missing (the message says to add it).
    """
    if method.upper() in SAFE_METHODS or connection.headers.get(CSRF_HEADER) is not None:
        return
    raise Unauthorized(
        f"a request authenticated by the session cookie that changes state must carry the "
        f"header '{CSRF_HEADER}: 1' (or send 'Authorization: Bearer TOKEN' instead)"
    )


def check_local(method: str, connection: HTTPConnection) -> None:
    """Refuse a request that changes state, with no credential, on a gateway with no
    authentication, when another site's page sent it (its ``Origin`` is not the gateway's):
    a browser on this host must not let any site act as the local user.

    Raises:
        Unauthorized: it changes state and came from another site's page.
    """
    if method.upper() in SAFE_METHODS or "origin" not in connection.headers:
        return
    if not own_origin(connection):
        raise Unauthorized(
            f"a request from another site's page ({connection.headers['origin'][:80]}) may "
            "not change state on this gateway; send it from the gateway's own dashboard"
        )


def own_origin(connection: HTTPConnection) -> bool:
    """Whether the ``Origin`` header names the gateway itself (the scheme and the ``Host`` the
    request was sent to): a page served by this gateway, not another site's."""
    origin = connection.headers.get("origin")
    host = connection.headers.get("host")
    if origin is None or host is None:
        return False
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    return origin.rstrip("/").lower() == f"{scheme}://{host}".lower()


def set_cookie(response: Response, credential: str, *, secure: bool) -> None:
    """Make ``response`` set the session cookie to ``credential`` (``Secure`` if ``secure``:
    the gateway serves HTTPS)."""
    response.set_cookie(
        COOKIE, credential, httponly=True, samesite="strict", secure=secure, path="/"
    )


def clear_cookie(response: Response, *, secure: bool) -> None:
    """Make ``response`` delete the session cookie."""
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=secure, path="/")
