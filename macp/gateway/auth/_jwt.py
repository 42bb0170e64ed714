"""JSON Web Tokens: the key they are signed with, verifying one into a principal, issuing one.

One algorithm per key, pinned (a token signed otherwise is refused, ``none`` included): a
shared secret is HS256 (at least 32 bytes); a PEM key is RS256 (RSA) or ES256 (EC P-256), a
public key to verify, a private key to sign (and verify). ``exp``, ``iat``, ``aud``, ``iss``,
``sub`` and ``role`` are required; ``sub`` is the principal's name, ``role`` its role, and an
optional ``namespaces`` list grants memory namespaces.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from macp.errors import ConfigError, Unauthorized
from macp.gateway.auth._principal import Principal, Role

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "JWT_SECRET_ENV",
    "JwtKey",
    "JwtVerifier",
    "issue_token",
]

JWT_SECRET_ENV: Final = "MACP_GATEWAY_JWT_SECRET"  # noqa: S105 - a variable's name
"""The environment variable holding the HS256 secret when no key file is given."""
DEFAULT_AUDIENCE: Final = "macp-gateway"
"""The ``aud`` a token must name unless the gateway is told another."""
DEFAULT_ISSUER: Final = "macp"
"""The ``iss`` a token must name unless the gateway is told another."""
MIN_SECRET_BYTES: Final = 32
_REQUIRED: Final = ["exp", "iat", "aud", "iss", "sub"]


@dataclass(frozen=True, slots=True)
class JwtKey:
    """A key and the one algorithm it is used with.

    Args:
        algorithm: ``HS256``, ``RS256`` or ``ES256``.
        verifying: what checks a signature (the secret, or the public key).
        signing: what signs (the secret, or the private key); ``None`` for a public key alone.
        source: where it came from, for messages (a path, ``$VARIABLE``).
    """

    algorithm: str
    verifying: Any
    signing: Any = None
    source: str = "the key"

    @classmethod
    def secret(cls, secret: str | bytes, source: str = "the secret") -> JwtKey:
        """An HS256 key.

        Raises:
            ConfigError: shorter than 32 bytes.
        """
        raw = secret.encode() if isinstance(secret, str) else secret
        if len(raw) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the JWT secret in {source} is {len(raw)} bytes; HS256 needs at least "
                f"{MIN_SECRET_BYTES} (make one with: openssl rand -hex 32)"
            )
        return cls("HS256", raw, raw, source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> JwtKey:
        """The key in ``path``: a PEM public or private key (RSA: RS256, EC P-256: ES256),
        else the file's text, stripped, as an HS256 secret.

        Raises:
            ConfigError: the file cannot be read, or holds a key of another kind.
        """
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError(f"--jwt-key-file {source}: cannot read it: {e.strerror}") from e
        if not data.lstrip().startswith(b"-----BEGIN"):
            return cls.secret(data.strip(), source)
        try:
            if b"PRIVATE KEY-----" in data:
                private = load_pem_private_key(data, password=None)
                return cls(_algorithm_of(private.public_key(), source), private.public_key(),
                           private, source)  # fmt: skip
            public = load_pem_public_key(data)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--jwt-key-file {source}: not a PEM key macp can read: {e}") from e
        return cls(_algorithm_of(public, source), public, None, source)

    @classmethod
    def from_env(cls, variable: str = JWT_SECRET_ENV) -> JwtKey | None:
        """The HS256 secret in the environment variable ``variable``, or ``None`` if unset.

        Raises:
            ConfigError: set, but shorter than 32 bytes.
        """
        value = os.environ.get(variable)
        return cls.secret(value, f"${variable}") if value else None


def _algorithm_of(public: Any, source: str) -> str:
    if isinstance(public, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return "ES256"
    raise ConfigError(
        f"--jwt-key-file {source}: the gateway takes an RSA key (RS256) or an EC P-256 key "
        f"(ES256), not a {type(public).__name__}"
    )


class JwtVerifier:
    """Checks bearer tokens signed with ``key``, for ``audience``, from ``issuer``."""

    def __init__(
        self, key: JwtKey, *, audience: str = DEFAULT_AUDIENCE, issuer: str = DEFAULT_ISSUER
    ) -> None:
        self.key, self.audience, self.issuer = key, audience, issuer

    def verify(self, token: str) -> Principal:
        """The principal ``token`` names.

        Raises:
            Unauthorized: expired, signed otherwise, for another audience or issuer, a claim
                missing or wrong; the message says which, in one sentence.
        """
        try:
            claims = jwt.decode(
                token, self.key.verifying, algorithms=[self.key.algorithm],
                audience=self.audience, issuer=self.issuer, options={"require": _REQUIRED},
            )  # fmt: skip
        except jwt.PyJWTError as e:
            raise Unauthorized(self._why(token, e)) from e
        return _principal_of(claims)

    def _why(self, token: str, e: jwt.PyJWTError) -> str:
        """Why ``token`` was refused, in one sentence."""
        if isinstance(e, jwt.ExpiredSignatureError):
            expired = _unverified(token).get("exp")
            when = _iso(expired) if isinstance(expired, int | float) else "its exp"
            return f"the token expired at {when}; get a new one"
        if isinstance(e, jwt.InvalidAlgorithmError):
            used = _header(token).get("alg")
            return f"the token is signed with {used}; this gateway takes {self.key.algorithm} only"
        if isinstance(e, jwt.MissingRequiredClaimError):
            return f"the token has no {e.claim!r} claim; a token needs {', '.join(_REQUIRED)}"
        reasons: list[tuple[type[jwt.PyJWTError], str]] = [
            (jwt.InvalidSignatureError,
             f"the token's signature does not verify with this gateway's key ({self.key.source})"),
            (jwt.InvalidAudienceError,
             f"the token's audience (aud) is not {self.audience!r}: it is for another service"),
            (jwt.InvalidIssuerError, f"the token's issuer (iss) is not {self.issuer!r}"),
            (jwt.ImmatureSignatureError,
             "the token is not valid yet (its nbf or iat is in the future)"),
        ]  # fmt: skip
        for kind, reason in reasons:
            if isinstance(e, kind):
                return reason
        return f"the credential is neither a valid token nor an API key: {e}"


def _principal_of(claims: dict[str, Any]) -> Principal:
    subject, role = claims.get("sub"), claims.get("role")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the token's subject (sub) must be a non-empty string")
    if role not in set(Role):
        roles = ", ".join(r.value for r in Role)
        raise Unauthorized(f"the token's role claim {role!r} is not one of {roles}")
    namespaces = claims.get("namespaces", [])
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise Unauthorized("the token's namespaces claim must be a list of strings")
    return Principal(subject, Role(role), "jwt", claims, frozenset(namespaces))


def _unverified(token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return {}


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def issue_token(
    key: JwtKey,
    *,
    subject: str,
    role: Role | str,
    ttl_s: float = 3600.0,
    audience: str = DEFAULT_AUDIENCE,
    issuer: str = DEFAULT_ISSUER,
    namespaces: list[str] | None = None,
    now: float | None = None,
) -> str:
    """A token for ``subject`` as ``role``, valid ``ttl_s`` seconds from ``now``.

    Raises:
        ConfigError: the key cannot sign (a public key), the role is unknown, or ttl_s <= 0.
    """
    if key.signing is None:
        raise ConfigError(f"{key.source} is a public key: signing a token needs the private key")
    try:
        role = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise ConfigError(f"--role {role!r} is not one of {roles}") from None
    if ttl_s <= 0:
        raise ConfigError(f"--ttl-s must be more than 0, not {ttl_s:g}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": subject, "role": role.value, "aud": audience,
                              "iss": issuer, "iat": issued, "exp": issued + int(ttl_s)}  # fmt: skip
    if namespaces:
        claims["namespaces"] = list(namespaces)
    return jwt.encode(claims, key.signing, algorithm=key.algorithm)
