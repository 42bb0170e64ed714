"""``macp gateway token`` and ``macp gateway keys``: credentials for the gateway (the
flags that configure its authentication when it serves are :mod:`macp.cli._serving`'s)."""

from __future__ import annotations

import json
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import Annotated

import typer

from macp.cli._serving import Audience, Issuer, KeysDb  # noqa: TC001 - typer reads them
from macp.cli._support import fail
from macp.errors import ConfigError

__all__ = ["keys_app", "token"]

keys_app = typer.Typer(help="API keys for agents and services: create, revoke, list.",
                       no_args_is_help=True)  # fmt: skip

Namespaces = Annotated[
    list[str] | None,
    typer.Option("--namespace", help="A memory namespace to grant (repeat for more)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def token(  # noqa: PLR0917 - typer's options are the parameters
    role: Annotated[str, typer.Option(help="viewer, operator, admin or agent.")],
    subject: Annotated[str, typer.Option(help="Who the token names (its sub).")],
    ttl_s: Annotated[float, typer.Option(help="Seconds until it expires.")] = 3600.0,
    key_file: Annotated[
        Path | None,
        typer.Option(
            help="The key to sign with: a secret, or a PEM private key (RS256/ES256); "
            "default: $MACP_GATEWAY_JWT_SECRET."
        ),
    ] = None,
    audience: Audience = "macp-gateway",
    issuer: Issuer = "macp",
    namespace: Namespaces = None,
) -> None:
    """Print a signed token (JWT) for --subject as --role, for tests and scripts."""
    from macp.gateway.auth import JWT_SECRET_ENV, JwtKey, issue_token  # noqa: PLC0415

    try:
        key = JwtKey.from_file(key_file) if key_file else JwtKey.from_env()
        if key is None:
            fail(f"no key to sign with: give --key-file, or set ${JWT_SECRET_ENV}")
        typer.echo(issue_token(key, subject=subject, role=role, ttl_s=ttl_s, audience=audience,
                               issuer=issuer, namespaces=namespace))  # fmt: skip
    except ConfigError as e:
        fail(e.message)


@keys_app.command("create")
def keys_create(
    principal: Annotated[str, typer.Option(help="The principal the key is bound to.")],
    role: Annotated[str, typer.Option(help="viewer, operator, admin or agent.")],
    namespace: Namespaces = None,
    keys_db: KeysDb = None,
    as_json: AsJson = False,
) -> None:
    """Create a key and print it (shown this once: only its hash is stored)."""
    from macp.gateway import KeyStore  # noqa: PLC0415

    try:
        with KeyStore(keys_db) as store:
            record, key = store.create(principal, role, namespace or [])
    except ConfigError as e:
        fail(e.message)
    if as_json:
        typer.echo(json.dumps({**record.as_json(), "key": key}))
    else:
        typer.echo(key)
        typer.echo(f"created API key {record.id} for {principal} ({record.role}); the key is "
                   "shown this once", err=True)  # fmt: skip


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (keys list names them).")],
    keys_db: KeysDb = None,
) -> None:
    """Revoke a key: the gateway refuses it from its next call."""
    from macp.gateway import KeyStore  # noqa: PLC0415

    try:
        with KeyStore(keys_db) as store:
            record = store.revoke(key_id)
    except ConfigError as e:
        fail(e.message)
    typer.echo(f"revoked API key {record.id} of {record.principal}")


@keys_app.command("list")
def keys_list(keys_db: KeysDb = None, as_json: AsJson = False) -> None:
    """List the keys (never their secrets), revoked ones included."""
    from macp.gateway import KeyStore  # noqa: PLC0415

    try:
        with KeyStore(keys_db) as store:
            records = store.list()
    except ConfigError as e:
        fail(e.message)
    for record in records:
        row = record.as_json()
        if as_json:
            typer.echo(json.dumps(row))
        else:
            revoked = f"revoked {row['revoked_at']}" if record.revoked_at else "active"
            spaces = ",".join(record.namespaces) or "-"
            typer.echo(f"{record.id}  {record.principal}  {record.role}  {spaces}  "
                       f"created {row['created_at']}  {revoked}")  # fmt: skip
