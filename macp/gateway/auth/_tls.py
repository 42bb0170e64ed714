"""TLS for the gateway's HTTP listeners: a certificate chain and its private key, as uvicorn
takes them (``ssl_certfile``, ``ssl_keyfile``)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from macp.errors import ConfigError

__all__ = ["Tls"]


@dataclass(frozen=True, slots=True)
class Tls:
    """A certificate (PEM, the chain) and its private key (PEM, unencrypted)."""

    cert: Path
    key: Path

    @classmethod
    def load(cls, cert: str | Path | None, key: str | Path | None) -> Tls | None:
        """``--tls-cert`` and ``--tls-key`` checked together; ``None`` if neither is given.

        Raises:
            ConfigError: one without the other, a file missing, or a pair that does not load
                (not PEM, or the key does not match the certificate).
        """
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            given, missing = (
                ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
            )
            raise ConfigError(f"{given} needs {missing} too: HTTPS takes a certificate and its key")
        tls = cls(Path(cert), Path(key))
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls.cert, tls.key)
        except FileNotFoundError as e:
            raise ConfigError(f"--tls-cert/--tls-key: no such file: {e.filename}") from e
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(
                f"--tls-cert {cert} with --tls-key {key} do not load as a PEM certificate and "
                f"its private key: {e}"
            ) from e
        return tls

    def uvicorn_options(self) -> dict[str, Any]:
        """What ``uvicorn.Config`` takes to serve HTTPS with it."""
        return {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
