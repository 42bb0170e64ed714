"""The dashboard's routes: the page at ``/`` (server-rendered from ``page.html``), ``/login``
and ``/logout`` (:mod:`.session`'s cookie), and the vendored JavaScript and CSS at
``/static``.

Each sign-in attempt is audited as ``dashboard_login`` (who, or ``anonymous`` if refused). The
page holds no data: its script reads the REST API and the WebSocket with the same
principal (a bearer header, or the session cookie), so a viewer sees and an operator may also
pause, resume and restart agents; the page only leaves out the buttons a principal may not
use (the API refuses them anyway). On a gateway with no authentication the page is the local
user's and ``/login`` is not needed.
"""

from __future__ import annotations

import html
import string
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs

from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from macp.errors import Unauthorized
from macp.gateway.audit import Outcome
from macp.gateway.dashboard import session
from macp.gateway.guard import Principal, Transport

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from macp.gateway.guard import Guard
    from macp.gateway.table import Scope, Table

__all__ = ["CONTROL_OPERATION", "STATIC", "dashboard_routes"]

HERE: Final = Path(__file__).parent
STATIC: Final = HERE / "static"
"""The vendored JavaScript and CSS."""
CONTROL_OPERATION: Final = "agent_control"
"""The operation the page's pause, resume and restart buttons call."""
_PAGE: Final = string.Template((HERE / "page.html").read_text())
_LOGIN: Final = string.Template((HERE / "login.html").read_text())
_MAX_FORM: Final = 16_384
_CREDENTIAL_FIELDS: Final = ("credential", "token", "key")
"""The login form's field that holds the credential (the page's is ``credential``)."""
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make a form's Origin "null"
    "Cache-Control": "no-store",
}


def dashboard_routes(guard: Guard, table: Table) -> list[BaseRoute]:
    """The dashboard's routes on a gateway whose calls ``guard`` decides over ``table``."""
    control = table[CONTROL_OPERATION].scope if CONTROL_OPERATION in table else None
    pages = _Pages(guard, control)
    return [
        Route("/", pages.page, methods=["GET"]),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


class _Pages:
    """The page, the login form and its answer, and the sign-out."""

    def __init__(self, guard: Guard, control: Scope | None) -> None:
        self.guard = guard
        self.control = control

    async def page(self, request: Request) -> Response:
        try:
            principal = _principal(request, self.guard)
        except Unauthorized as e:
            return _login(f"{e.message}; sign in again", 401)
        if principal is None:
            return RedirectResponse("/login", 303)
        logout = (
            '<form method="post" action="/logout"><button type="submit">Sign out</button></form>'
            if self.guard.configured else ""
        )  # fmt: skip
        text = _PAGE.substitute(
            principal=html.escape(principal.name), role=html.escape(str(principal.role)),
            can_control=str(self.control is not None and principal.may(self.control)).lower(),
            auth=str(self.guard.configured).lower(), logout=logout,
        )  # fmt: skip
        return HTMLResponse(text, headers=_HEADERS)

    async def login_form(self, _request: Request) -> Response:
        if not self.guard.configured:
            return RedirectResponse("/", 303)
        return _login("", 200)

    async def login(self, request: Request) -> Response:
        """Check the form's credential with the guard; if good, set it as the cookie. A form
        another site's page sent (its ``Origin`` not the gateway's) is refused: it would sign
        the browser in as someone else. Each attempt is audited (``dashboard_login``)."""
        if not self.guard.configured:
            return RedirectResponse("/", 303)
        if "origin" in request.headers and not session.own_origin(request):
            return _login("Sign in from this gateway's own page: another site sent this form.", 403)
        form = await _form(request)
        if form is None:
            return _login(
                f"The form is larger than {_MAX_FORM} bytes; send only a credential.", 413
            )
        given = next((form[f] for f in _CREDENTIAL_FIELDS if form.get(f)), [""])
        credential = given[0].strip()
        if not credential:
            return _login("Give a token or an API key.", 400)
        try:
            principal = self.guard.authenticate(credential)
        except Unauthorized as e:
            self._note(request, None, e)
            return _login(f"Not signed in: {e.message}.", 401)
        self._note(request, principal, None)
        response = RedirectResponse("/", 303)
        session.set_cookie(response, credential, secure=request.url.scheme == "https")
        return response

    def _note(
        self, request: Request, principal: Principal | None, error: Unauthorized | None
    ) -> None:
        client = request.client
        self.guard.note(
            "dashboard_login", principal=principal, transport=Transport.REST,
            outcome=Outcome.OK if error is None else Outcome.DENIED,
            code=None if error is None else error.code,
            connection=None if client is None else f"{client.host}:{client.port}",
        )  # fmt: skip

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login" if self.guard.configured else "/", 303)
        session.clear_cookie(response, secure=request.url.scheme == "https")
        return response


def _principal(request: Request, guard: Guard) -> Principal | None:
    """Who asks for the page: a bearer header, an X-API-Key header or the session cookie; the
    local user on a gateway with no authentication; ``None`` if it must sign in.

    Raises:
        Unauthorized: the credential it sent is refused (expired, revoked, ...).
    """
    if not guard.configured:
        return Principal.local()
    header = request.headers.get("authorization")
    if header:
        credential: str | None = header.partition(" ")[2].strip()
    else:
        credential = request.headers.get("x-api-key") or session.credential_of(request)
    return None if not credential else guard.authenticate(credential)


async def _form(request: Request) -> dict[str, list[str]] | None:
    """The request's urlencoded form; ``None`` if it is larger than :data:`_MAX_FORM` bytes
    (read no further)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _MAX_FORM:
            return None
    return parse_qs(raw.decode(errors="replace"))


def _login(error: str, status: int) -> Response:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return HTMLResponse(_LOGIN.substitute(error=shown), status, headers=_HEADERS)
