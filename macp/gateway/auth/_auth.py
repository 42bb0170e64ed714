"""One authenticator for every transport: a bearer token or an API key, to a principal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from macp.errors import ConfigError, Unauthorized
from macp.gateway.auth._keys import KEY_PREFIX

if TYPE_CHECKING:
    from macp.gateway.auth._jwt import JwtVerifier
    from macp.gateway.auth._keys import KeyStore
    from macp.gateway.auth._principal import Principal

__all__ = ["Auth"]


class Auth:
    """Authentication as configured: JWTs checked by ``jwt``, API keys by ``keys`` (one or
    both).

    Raises:
        ConfigError: neither is given.
    """

    def __init__(self, *, jwt: JwtVerifier | None = None, keys: KeyStore | None = None) -> None:
        if jwt is None and keys is None:
            raise ConfigError("authentication needs a JWT key, an API key store, or both")
        self.jwt, self.keys = jwt, keys

    def authenticate(self, credential: str) -> Principal:
        """The principal ``credential`` proves: an API key (``macpk_...``) or a JWT.

        Raises:
            Unauthorized: it proves nothing; the message says why, in one sentence.
        """
        credential = credential.strip() if isinstance(credential, str) else ""
        if credential.lower().startswith("bearer "):
            credential = credential[len("bearer ") :].strip()
        if not credential:
            raise Unauthorized("no credential: give a bearer token or an API key")
        if credential.startswith(KEY_PREFIX):
            if self.keys is None:
                raise Unauthorized("this gateway takes no API keys; give a bearer token (a JWT)")
            return self.keys.verify(credential)
        if self.jwt is None:
            raise Unauthorized(
                f"this gateway takes API keys only ({KEY_PREFIX}...), not bearer tokens"
            )
        return self.jwt.verify(credential)

    def close(self) -> None:
        """Close the key store, if any."""
        if self.keys is not None:
            self.keys.close()
