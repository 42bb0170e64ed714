"""The dashboard on a gateway with authentication (JWTs), against a real cluster (a head and
a worker process; the gateway a member node of its own): /login checks the token with the
guard and sets an HttpOnly, SameSite=Strict cookie (Secure under TLS); the page, the REST API
and the WebSocket accept it; a cookie-authenticated request that changes state needs the
X-MACP-CSRF header; the WebSocket takes the cookie only from the gateway's own Origin; a
viewer's controls are disabled and the API refuses them, an operator pauses and resumes an
agent from the page. The browser is the system's chromium, driven by Playwright."""

from __future__ import annotations

import json
import re
import ssl
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from dashboard_browser import Tab, launch
from gateway_cluster import cluster_procs, member
from playwright.sync_api import expect, sync_playwright
from test_gateway_auth import self_signed
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from macp.gateway import Auth, Gateway, Guard, JwtKey, JwtVerifier, KeyStore, issue_token
from macp.gateway.audit import AuditLog, digest, read_records
from macp.gateway.auth import Tls

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from playwright.sync_api import Browser

    from macp.gateway import Member

__all__ = ["cluster_procs", "member"]  # fixtures

pytestmark = pytest.mark.integration

KEY = JwtKey.secret("a-dashboard-secret-of-at-least-32-bytes")
AGENT = "echo1@w1"


def token(role: str, subject: str = "ann") -> str:
    return issue_token(KEY, subject=subject, role=role)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright, launch(playwright) as launched:
        yield launched


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyStore]:
    with KeyStore(tmp_path / "keys.sqlite3") as store:
        yield store


@pytest.fixture
def url(member: Member, keys: KeyStore) -> Iterator[str]:
    guard = Guard(Auth(jwt=JwtVerifier(KEY), keys=keys))
    with Gateway(member, jsonrpc=None, http="127.0.0.1:0", guard=guard) as gateway:
        yield gateway.addresses["http"]


def sign_in(tab: Tab, url: str, credential: str) -> None:
    tab.page.goto(url)
    expect(tab.page).to_have_url(f"{url}/login")
    tab.page.fill("#credential", credential)
    tab.page.click("#login button[type=submit]")


@contextmanager
def signed_in(url: str, credential: str) -> Iterator[httpx.Client]:
    """An HTTP client holding the session cookie /login set for ``credential``."""
    with httpx.Client(base_url=url, timeout=10) as http:
        answer = http.post("/login", data={"credential": credential})
        assert (answer.status_code, answer.headers["location"]) == (303, "/")
        yield http


def test_login_with_a_token_sets_the_cookie_and_the_page_api_and_websocket_take_it(
    browser: Browser, url: str
) -> None:
    with Tab.open(browser, "") as tab:
        sign_in(tab, url, token("viewer"))
        expect(tab.page).to_have_url(f"{url}/")
        expect(tab.page.locator("#principal")).to_have_text("ann (viewer)")
        expect(tab.page.locator("#topology-name")).to_have_text(  # started by no topology file
            "no topology recorded: agents grouped by group or role"
        )
        expect(tab.page.locator("#ws-state")).to_have_text("live")
        expect(tab.page.locator(f'circle[data-address="{AGENT}"]')).to_have_count(1)
        (cookie,) = tab.page.context.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (
            "macp_session", True, "Strict", False,
        )  # fmt: skip
        assert tab.page.evaluate("document.cookie") == ""  # no script reads it
        tab.shot("dashboard-signed-in")
        assert tab.errors == []


def test_login_refuses_a_bad_token_with_the_reason_and_sets_no_cookie(
    browser: Browser, url: str
) -> None:
    forged = issue_token(JwtKey.secret("x" * 40), subject="ann", role="admin")
    with Tab.open(browser, "") as tab:
        sign_in(tab, url, forged)
        expect(tab.page.locator("#login .error")).to_have_text(
            re.compile(r"^Not signed in: the token's signature does not verify")
        )
        assert tab.page.context.cookies() == []
        tab.page.goto(url)
        expect(tab.page).to_have_url(f"{url}/login")
        tab.shot("dashboard-login")


def test_a_viewer_sees_the_controls_disabled_and_the_api_refuses_them(
    browser: Browser, url: str
) -> None:
    with Tab.open(browser, "") as tab:
        sign_in(tab, url, token("viewer", "vera"))
        row = tab.page.locator(f'#agents tr[data-address="{AGENT}"]')
        for command in ("pause", "resume", "restart"):
            expect(row.locator(f'button[data-command="{command}"]')).to_be_disabled()
        answer = tab.page.evaluate(
            """async (agent) => {
                const r = await fetch("/api/v1/operations/agent_control", {method: "POST",
                    headers: {"Content-Type": "application/json", "X-MACP-CSRF": "1"},
                    body: JSON.stringify({command: "pause", target: agent})});
                return [r.status, (await r.json()).error.message];
            }""",
            AGENT,
        )
        assert answer == [
            403,
            "vera (viewer) may not call agent_control: it needs the control scope",
        ]


def test_an_operator_pauses_and_resumes_an_agent_from_the_page(browser: Browser, url: str) -> None:
    with Tab.open(browser, "") as tab:
        sign_in(tab, url, token("operator", "otto"))
        expect(tab.page.locator("#principal")).to_have_text("otto (operator)")
        expect(tab.page.locator("#ws-state")).to_have_text("live")
        row = tab.page.locator(f'#agents tr[data-address="{AGENT}"]')
        dot = tab.page.locator(f'circle[data-address="{AGENT}"]')
        try:
            row.locator('button[data-command="pause"]').click()
            expect(dot).to_have_attribute("data-status", "paused", timeout=2000)
            tab.page.locator(
                f'#agents tr[data-address="{AGENT}"] button[data-command="resume"]'
            ).click()
            expect(dot).to_have_attribute("data-status", "available", timeout=2000)
            restart = f'#agents tr[data-address="{AGENT}"] button[data-command="restart"]'
            tab.page.locator(restart).click()
            expect(tab.page.locator("#notice")).to_have_text(f"restart {AGENT}: done")
            expect(dot).to_have_attribute("data-status", "available")
        finally:
            with signed_in(url, token("operator")) as http:
                http.post("/api/v1/operations/agent_control",
                          json={"command": "resume", "target": AGENT},
                          headers={"X-MACP-CSRF": "1"})  # fmt: skip
        assert tab.errors == []


def test_a_cookie_request_that_changes_state_needs_the_csrf_header(url: str) -> None:
    with signed_in(url, token("operator")) as http:
        assert http.get("/api/v1/agents").status_code == 200
        refused = http.post("/api/v1/operations/ping", json={})
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == (
            "a request authenticated by the session cookie that changes state must carry the "
            "header 'X-MACP-CSRF: 1' (or send 'Authorization: Bearer TOKEN' instead)"
        )
        taken = http.post("/api/v1/operations/ping", json={}, headers={"X-MACP-CSRF": "1"})
        assert (taken.status_code, taken.json()["status"]) == (200, "ok")
        # a bearer header needs no CSRF header: no browser sends one by itself
        bearer = httpx.post(f"{url}/api/v1/operations/ping", json={},
                            headers={"Authorization": f"Bearer {token('viewer')}"})  # fmt: skip
        assert bearer.status_code == 200
    with httpx.Client(base_url=url, timeout=10) as anonymous:
        assert anonymous.get("/api/v1/agents").status_code == 401
        assert anonymous.get("/", follow_redirects=False).headers["location"] == "/login"


def test_an_api_key_signs_in_and_its_revocation_ends_the_session(url: str, keys: KeyStore) -> None:
    record, key = keys.create("svc", "operator")
    with httpx.Client(base_url=url, timeout=10) as http:  # the form's field may be named "key"
        assert http.post("/login", data={"key": key}).headers["location"] == "/"
    with httpx.Client(base_url=url, timeout=10) as http:  # a header is a credential too
        assert 'data-principal="svc"' in http.get("/", headers={"X-API-Key": key}).text
        bearer = http.get("/", headers={"Authorization": f"Bearer {token('viewer', 'bo')}"})
        assert 'data-principal="bo" data-role="viewer" data-can-control="false"' in bearer.text
    with signed_in(url, key) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert 'data-principal="svc" data-role="operator" data-can-control="true"' in page.text
        keys.revoke(record.id)
        refused = http.get("/api/v1/agents")
        assert refused.status_code == 401
        assert refused.json()["error"]["message"].startswith(f"API key {record.id} was revoked at ")
        again = http.get("/", follow_redirects=False)
        assert again.status_code == 401
        assert "sign in again" in again.text


def test_a_login_form_sent_from_another_site_is_refused(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        answer = http.post(
            "/login", data={"credential": token("admin")},
            headers={"Origin": "http://elsewhere.example"},
        )  # fmt: skip
        assert answer.status_code == 403
        assert "another site sent this form" in answer.text
        assert "macp_session" not in http.cookies
        own = http.post("/login", data={"credential": token("admin")}, headers={"Origin": url})
        assert (own.status_code, "macp_session" in http.cookies) == (303, True)


def test_sign_out_clears_the_cookie(url: str) -> None:
    with signed_in(url, token("viewer")) as http:
        out = http.post("/logout")
        assert (out.status_code, out.headers["location"]) == (303, "/login")
        assert "macp_session" not in http.cookies
        assert http.get("/api/v1/agents").status_code == 401


def first_event(url: str, origin: str, cookie: str) -> dict[str, Any]:
    ws_url = url.replace("http://", "ws://") + "/ws"
    headers = {"Origin": origin, "Cookie": f"macp_session={cookie}"}
    with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "topics": ["agent_update"]}))
        event: dict[str, Any] = json.loads(ws.recv(timeout=10))
        if event["type"] == "error":
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None
            event["close"] = closed.value.rcvd.code
        return event


def test_the_websocket_takes_the_cookie_only_from_the_gateways_own_origin(url: str) -> None:
    credential = token("viewer", "vera")
    taken = first_event(url, url, credential)
    assert (taken["type"], taken["data"]["principal"]) == ("authenticated", "vera")
    refused = first_event(url, "http://elsewhere.example", credential)
    assert (refused["type"], refused["close"]) == ("error", 4401)
    assert refused["data"]["message"] == (
        "the session cookie is taken only from this gateway's own pages (the Origin header "
        "must be its address); send 'token' in the first message instead"
    )


def test_the_cookie_is_secure_under_tls(member: Member, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    guard = Guard(Auth(jwt=JwtVerifier(KEY)))
    served = Gateway(member, jsonrpc=None, http="127.0.0.1:0", guard=guard, tls=Tls.load(cert, key))
    with served:
        url = served.addresses["http"]
        assert url.startswith("https://")
        verify = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, timeout=10, verify=verify) as http:
            answer = http.post("/login", data={"credential": token("viewer")})
            assert answer.status_code == 303
            attributes = {a.strip().lower() for a in answer.headers["set-cookie"].split(";")}
            assert {"httponly", "samesite=strict", "secure", "path=/"} <= attributes


def test_each_sign_in_attempt_is_audited_without_its_credential(
    member: Member, tmp_path: Path
) -> None:
    audit = AuditLog(tmp_path / "audit.sqlite3", gateway="gw")
    guard = Guard(Auth(jwt=JwtVerifier(KEY)), audit=audit)
    with Gateway(member, jsonrpc=None, http="127.0.0.1:0", guard=guard) as gateway:
        url = gateway.addresses["http"]
        with signed_in(url, token("viewer", "vera")):
            pass
        forged = issue_token(JwtKey.secret("x" * 40), subject="mallory", role="admin")
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.post("/login", data={"credential": forged}).status_code == 401
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        huge = httpx.post(f"{url}/login", content=b"credential=" + b"x" * 20_000, headers=form)
        assert huge.status_code == 413
        assert "The form is larger than 16384 bytes" in huge.text
    audit.close()
    records = [
        r for r in read_records(tmp_path / "audit.sqlite3") if r.operation == "dashboard_login"
    ]
    assert [(r.principal, r.role, r.outcome, r.code, r.transport) for r in records] == [
        ("vera", "viewer", "ok", None, "rest"),
        ("anonymous", "", "denied", -32006, "rest"),
    ]
    assert {r.params_sha256 for r in records} == {digest(None)[0]}  # no credential kept
