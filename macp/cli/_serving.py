"""The flags a serving gateway takes, in one place: ``macp gateway`` and ``macp mcp --http``
both declare them with these types and build their guard with :func:`serving_guard`, so the
two commands authenticate, audit and limit alike (``macp up`` passes the topology file's
``gateway:`` section as the same flags)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from macp.cli._support import fail
from macp.errors import ConfigError

if TYPE_CHECKING:
    from macp.gateway import Auth, Guard
    from macp.gateway.auth import Tls

__all__ = [
    "Audience",
    "AuditDb",
    "Insecure",
    "Issuer",
    "JwtKeyFile",
    "KeysDb",
    "RatePerConnection",
    "RatePerPrincipal",
    "SubmissionsPerMin",
    "TlsCert",
    "TlsKey",
    "WebsocketsPerPrincipal",
    "serving_guard",
    "serving_tls",
]

# The defaults of the limits are QuotaLimits' (macp/gateway/quotas.py), written here so that
# --help shows them without importing the gateway.
DEFAULT_RATE_PER_PRINCIPAL = 200
DEFAULT_RATE_PER_CONNECTION = 100
DEFAULT_SUBMISSIONS_PER_MIN = 120
DEFAULT_WEBSOCKETS_PER_PRINCIPAL = 16

KeysDb = Annotated[
    Path | None,
    typer.Option(help="The API key store (default: keys.sqlite3 in $MACP_DATA_DIR/gateway, "
                 "else .macp/gateway)."),
]  # fmt: skip
Audience = Annotated[str, typer.Option(help="The audience (aud) tokens must name.")]
Issuer = Annotated[str, typer.Option(help="The issuer (iss) tokens must name.")]
JwtKeyFile = Annotated[
    Path | None,
    typer.Option(
        help="Check bearer tokens with this key: a secret (HS256), or a PEM public key "
        "(RS256/ES256); default: $MACP_GATEWAY_JWT_SECRET if set."
    ),
]
TlsCert = Annotated[
    Path | None, typer.Option(help="Serve HTTP listeners as HTTPS with this certificate.")
]
TlsKey = Annotated[Path | None, typer.Option(help="The --tls-cert's private key.")]
Insecure = Annotated[
    bool,
    typer.Option(
        help="Serve a listener other hosts can reach with no authentication configured, and "
        "allow plaintext to the cluster off loopback."
    ),
]
AuditDb = Annotated[
    Path | None,
    typer.Option(
        help="Record every call, allowed or refused, in this SQLite file (default: "
        "$MACP_DATA_DIR/gateway/audit.sqlite3, else .macp/gateway/audit.sqlite3; what "
        "`macp gateway audit` reads)."
    ),
]
RatePerPrincipal = Annotated[
    int,
    typer.Option(help="Operations one principal may call a second, on every transport "
                 "together (0: no limit).", min=0),
]  # fmt: skip
RatePerConnection = Annotated[
    int,
    typer.Option(help="Requests one connection may send a second: a JSON-RPC connection, an "
                 "HTTP client's IP:port (0: no limit).", min=0),
]  # fmt: skip
SubmissionsPerMin = Annotated[
    int,
    typer.Option(help="Tasks and workflow runs one principal may submit a minute (0: no "
                 "limit).", min=0),
]  # fmt: skip
WebsocketsPerPrincipal = Annotated[
    int,
    typer.Option(help="WebSockets one principal may hold open at once on /ws (0: no limit).",
                 min=0),
]  # fmt: skip


def serving_guard(
    *,
    jwt_key_file: Path | None,
    keys_db: Path | None,
    audience: str,
    issuer: str,
    audit_db: Path | None,
    rate_per_principal: int,
    rate_per_connection: int,
    submissions_per_min: int,
    websockets_per_principal: int,
    authenticate: bool = True,
) -> Guard:
    """The guard the serving flags ask for: JWTs if ``--jwt-key-file`` or
    ``$MACP_GATEWAY_JWT_SECRET`` gives a key; API keys if ``--keys-db`` is given or the default
    store exists (neither: no authentication; nor with ``authenticate`` false, as for standard
    input, which is the local user); always an audit log (``--audit-db`` or the default file)
    and the limits. Exits 2 for a key, store or audit file that cannot be used."""
    from macp.gateway import Guard  # noqa: PLC0415
    from macp.gateway.audit import AuditLog  # noqa: PLC0415
    from macp.gateway.quotas import QuotaLimits, Quotas  # noqa: PLC0415

    try:
        limits = QuotaLimits(
            requests_per_s=rate_per_principal, connection_requests_per_s=rate_per_connection,
            submissions_per_min=submissions_per_min, websockets=websockets_per_principal,
        )  # fmt: skip
        auth = _auth(jwt_key_file, keys_db, audience, issuer) if authenticate else None
        return Guard(auth, audit=AuditLog(audit_db), quotas=Quotas(limits))
    except ConfigError as e:
        fail(e.message)


def _auth(
    jwt_key_file: Path | None, keys_db: Path | None, audience: str, issuer: str
) -> Auth | None:
    from macp.gateway import Auth, JwtKey, JwtVerifier, KeyStore  # noqa: PLC0415
    from macp.gateway.auth import default_keys_path  # noqa: PLC0415

    key = JwtKey.from_file(jwt_key_file) if jwt_key_file else JwtKey.from_env()
    verifier = JwtVerifier(key, audience=audience, issuer=issuer) if key else None
    store_path = keys_db or (default_keys_path() if default_keys_path().exists() else None)
    store = KeyStore(store_path) if store_path is not None else None
    return Auth(jwt=verifier, keys=store) if verifier or store else None


def serving_tls(cert: Path | None, key: Path | None) -> Tls | None:
    """``--tls-cert`` and ``--tls-key`` loaded; exits 2 for a pair that does not load."""
    from macp.gateway.auth import Tls  # noqa: PLC0415

    try:
        return Tls.load(cert, key)
    except ConfigError as e:
        fail(e.message)
