"""``macp gateway audit``: read a gateway's audit log (:mod:`macp.gateway.audit`), oldest
first, one call a line; it opens the file read-only and never changes it."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated, Final

import typer

from macp.cli._support import fail
from macp.errors import ConfigError

if TYPE_CHECKING:
    from macp.gateway.audit import AuditRecord

__all__ = ["audit", "since_ms"]

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def since_ms(text: str, *, now_s: float | None = None) -> int:
    """``--since`` as epoch milliseconds: a duration back from now (``90s``, ``15m``, ``2h``,
    ``1d``, ``1h30m``) or an ISO 8601 time (``2025-06-01T12:00:00``, local time unless it has
    an offset).

    Raises:
        ConfigError: neither; the message shows both forms.
    """
    now_s = time.time() if now_s is None else now_s
    text = text.strip()
    parts = _DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        back_s = sum(float(n) * _UNIT_S[u] for n, u in parts)
        return int((now_s - back_s) * 1000)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither a duration (90s, 15m, 2h, 1d) nor an ISO 8601 time "
            "(2025-06-01T12:00:00)"
        ) from None
    return int(when.timestamp() * 1000)


def audit(
    since: Annotated[
        str | None,
        typer.Option(help="Only calls from then on: a duration back (15m, 2h, 1d) or a time."),
    ] = None,
    principal: Annotated[str | None, typer.Option(help="Only the calls of this principal.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the last N calls.", min=1)] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line (every field).")
    ] = False,
    db: Annotated[
        Path | None,
        typer.Option(
            help="The audit log (the gateway's --audit-db; default: "
            "$MACP_DATA_DIR/gateway/audit.sqlite3, else .macp/gateway/audit.sqlite3)."
        ),
    ] = None,
) -> None:
    """Print the gateway's audit log: every call, allowed or refused, oldest first.

    Each line: time, principal (role, how authenticated), transport, operation, outcome (ok,
    denied, error, limited), code, duration, and the parameters' sha256 (first 12 digits) and
    size. Exits 2 for a bad flag, 1 if there is no audit log there.
    """
    from macp.gateway.audit import read_records  # noqa: PLC0415 - the gateway only when asked

    try:
        from_ms = None if since is None else since_ms(since)
    except ConfigError as e:
        fail(e.message)
    try:
        records = read_records(db, since_ms=from_ms, principal=principal, limit=limit)
    except ConfigError as e:
        fail(e.message, 1)
    for record in records:
        typer.echo(json.dumps(record.as_dict()) if as_json else _line(record))


def _line(record: AuditRecord) -> str:
    when = dt.datetime.fromtimestamp(record.ts_ms / 1000, dt.UTC).astimezone()
    when_text = when.isoformat(timespec="milliseconds")
    if record.outcome == "dropped":
        return f"{when_text}  {record.params_bytes} records dropped (the audit queue was full)"
    who = f"{record.principal} ({record.role}, {record.via})"
    code = "-" if record.code is None else str(record.code)
    return (
        f"{when_text}  {who:<28} {record.transport:<9} {record.operation:<26} {record.outcome:<7} "
        f"{code:>6} {record.duration_ms:9.1f} ms  {record.params_sha256[:12]} "
        f"{record.params_bytes} B"
    )
