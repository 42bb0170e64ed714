"""Authentication behind the gateway's guard: who a credential names, and what its role holds.

Users hold JWTs (:class:`JwtVerifier`, one pinned algorithm per key, ``exp``/``aud``/``iss``
required); agents and services hold API keys (:class:`KeyStore`, stored hashed, revocable).
:class:`Auth` takes either and answers a :class:`Principal`; :data:`ROLE_SCOPES` says what
each :class:`Role` may call.
"""

from __future__ import annotations

from macp.gateway.auth._auth import Auth
from macp.gateway.auth._jwt import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    JWT_SECRET_ENV,
    JwtKey,
    JwtVerifier,
    issue_token,
)
from macp.gateway.auth._keys import KEY_PREFIX, ApiKey, KeyStore, default_keys_path
from macp.gateway.auth._principal import (
    ALL_NAMESPACES,
    MEMORY_SCOPES,
    ROLE_SCOPES,
    Principal,
    Role,
)

__all__ = [
    "ALL_NAMESPACES",
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "JWT_SECRET_ENV",
    "KEY_PREFIX",
    "MEMORY_SCOPES",
    "ROLE_SCOPES",
    "ApiKey",
    "Auth",
    "JwtKey",
    "JwtVerifier",
    "KeyStore",
    "Principal",
    "Role",
    "default_keys_path",
    "issue_token",
]
