"""Authentication: a JWT (pinned algorithm; exp, aud, iss required; role and subject) and an
API key (hashed, revocable at once) each become a principal, and every refusal is one sentence
saying why."""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from macp import ConfigError, Unauthorized
from macp.gateway import Auth, Guard, JwtKey, JwtVerifier, KeyStore, Principal, Role, issue_token

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "s" * 32


def verifier(key: JwtKey | None = None) -> JwtVerifier:
    return JwtVerifier(key or JwtKey.secret(SECRET))


def test_a_token_names_its_subject_role_and_namespaces() -> None:
    key = JwtKey.secret(SECRET)
    token = issue_token(key, subject="ann", role="operator", namespaces=["shared"])
    principal = verifier().verify(token)
    assert (principal.name, principal.role, principal.via) == ("ann", Role.OPERATOR, "jwt")
    assert principal.namespaces == {"shared"}
    assert principal.claims["aud"] == "macp-gateway"


def test_an_expired_token_is_refused_saying_when() -> None:
    token = issue_token(JwtKey.secret(SECRET), subject="ann", role="admin", ttl_s=60,
                        now=time.time() - 120)  # fmt: skip
    with pytest.raises(
        Unauthorized, match=r"^the token expired at \d{4}-\d\d-\d\dT.*; get a new one$"
    ):
        verifier().verify(token)


def test_a_token_signed_with_another_key_is_refused() -> None:
    token = issue_token(JwtKey.secret("t" * 32), subject="ann", role="admin")
    with pytest.raises(Unauthorized, match=r"^the token's signature does not verify"):
        verifier().verify(token)


def test_a_token_for_another_audience_or_issuer_is_refused() -> None:
    key = JwtKey.secret(SECRET)
    with pytest.raises(Unauthorized, match=r"audience \(aud\) is not 'macp-gateway'"):
        verifier().verify(issue_token(key, subject="a", role="admin", audience="billing"))
    with pytest.raises(Unauthorized, match=r"^the token's issuer \(iss\) is not 'macp'$"):
        verifier().verify(issue_token(key, subject="a", role="admin", issuer="evil"))


def test_a_token_without_exp_aud_or_iss_is_refused() -> None:
    now = int(time.time())
    full = {"sub": "a", "role": "admin", "aud": "macp-gateway", "iss": "macp", "iat": now,
            "exp": now + 60}  # fmt: skip
    for claim in ("exp", "aud", "iss"):
        claims = {k: v for k, v in full.items() if k != claim}
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        with pytest.raises(Unauthorized, match=rf"^the token has no '{claim}' claim"):
            verifier().verify(token)


def test_the_algorithm_is_pinned() -> None:
    now = int(time.time())
    claims = {"sub": "a", "role": "admin", "aud": "macp-gateway", "iss": "macp", "iat": now,
              "exp": now + 60}  # fmt: skip
    unsigned = jwt.encode(claims, "", algorithm="none")
    with pytest.raises(
        Unauthorized, match=r"^the token is signed with none; this gateway takes HS256 only$"
    ):
        verifier().verify(unsigned)
    other = jwt.encode(claims, SECRET + "x" * 32, algorithm="HS512")
    with pytest.raises(Unauthorized, match=r"signed with HS512; this gateway takes HS256 only"):
        verifier().verify(other)


def test_a_token_with_an_unknown_role_is_refused() -> None:
    token = issue_token(JwtKey.secret(SECRET), subject="a", role="admin")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="macp-gateway")
    claims["role"] = "root"
    with pytest.raises(
        Unauthorized,
        match=r"^the token's role claim 'root' is not one of viewer, operator, admin, agent$",
    ):
        verifier().verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_a_short_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"is 5 bytes; HS256 needs at least 32"):
        JwtKey.secret("short")


def test_rs256_and_es256_keys_from_pem_files(tmp_path: Path) -> None:
    for private, algorithm in ((rsa.generate_private_key(65537, 2048), "RS256"),
                               (ec.generate_private_key(ec.SECP256R1()), "ES256")):  # fmt: skip
        private_file, public_file = tmp_path / f"{algorithm}.pem", tmp_path / f"{algorithm}.pub"
        pem = serialization.Encoding.PEM
        private_file.write_bytes(private.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
        public_file.write_bytes(private.public_key().public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
        signer, public = JwtKey.from_file(private_file), JwtKey.from_file(public_file)
        assert signer.algorithm == public.algorithm == algorithm
        token = issue_token(signer, subject="svc", role="viewer")
        assert verifier(public).verify(token).name == "svc"
        with pytest.raises(
            ConfigError, match="is a public key: signing a token needs the private key"
        ):
            issue_token(public, subject="svc", role="viewer")
        forged = jwt.encode({"sub": "x"}, SECRET, algorithm="HS256")
        with pytest.raises(
            Unauthorized, match=rf"signed with HS256; this gateway takes {algorithm} only"
        ):
            verifier(public).verify(forged)


def test_a_key_file_holding_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert JwtKey.from_file(path).verifying == SECRET.encode()
    with pytest.raises(ConfigError, match=r"^--jwt-key-file .*missing: cannot read it"):
        JwtKey.from_file(tmp_path / "missing")


def test_an_api_key_is_stored_hashed_and_revoked_at_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    with KeyStore(path) as store:
        record, key = store.create("worker-1", "agent", ["shared"])
        assert key.startswith(f"macpk_{record.id}_")
        principal = store.verify(key)
        assert (principal.name, principal.role, principal.via) == (
            "worker-1",
            Role.AGENT,
            "api-key",
        )
        assert principal.memory_grants == {"agent:worker-1", "shared"}
        secret = key.split("_", 2)[2]
        dump = "\n".join(
            str(row) for row in sqlite3.connect(path).execute("SELECT * FROM api_keys")
        )
        assert secret not in dump
        with KeyStore(path) as other:  # another connection, as the CLI in another process
            revoked = other.revoke(record.id)
        assert revoked.revoked_at is not None
        with pytest.raises(
            Unauthorized, match=rf"^API key {record.id} was revoked at .*; ask for a new one$"
        ):
            store.verify(key)
        assert [k.id for k in store.list()] == [record.id]


def test_an_unknown_or_wrong_api_key_is_refused(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "keys.sqlite3") as store:
        record, key = store.create("svc", "viewer")
        with pytest.raises(
            Unauthorized, match=rf"^unknown API key {record.id}: no key of this gateway matches it$"
        ):
            store.verify(key[:-1] + ("A" if key[-1] != "A" else "B"))
        with pytest.raises(Unauthorized, match=r"^unknown API key 0000000000000000"):
            store.verify("macpk_0000000000000000_secret")
        with pytest.raises(Unauthorized, match=r"^the API key is malformed"):
            store.verify("macpk_nope")
        with pytest.raises(ConfigError, match=r"^--role 'god' is not one of"):
            store.create("svc", "god")
        with pytest.raises(ConfigError, match=r"^no API key has the id 'nope'"):
            store.revoke("nope")


def test_the_guard_authenticates_tokens_and_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    guard = Guard(Auth(jwt=verifier(), keys=store))
    assert guard.configured
    token = issue_token(JwtKey.secret(SECRET), subject="ann", role="viewer")
    assert guard.authenticate(token) == guard.authenticate(f"Bearer {token}")
    assert guard.authenticate(token).role is Role.VIEWER
    _, key = store.create("svc", "operator")
    assert guard.authenticate(key).name == "svc"
    with pytest.raises(Unauthorized, match=r"^no credential: give a bearer token or an API key$"):
        guard.authenticate("  ")
    with pytest.raises(
        Unauthorized, match=r"^the credential is neither a valid token nor an API key"
    ):
        guard.authenticate("garbage")
    keys_only = Guard(Auth(keys=store))
    with pytest.raises(Unauthorized, match=r"^this gateway takes API keys only"):
        keys_only.authenticate(token)
    with pytest.raises(Unauthorized, match=r"^this gateway takes no API keys"):
        Guard(Auth(jwt=verifier())).authenticate(key)
    with pytest.raises(ConfigError, match="needs a JWT key, an API key store, or both"):
        Auth()
    store.close()
    assert Principal.local().role is Role.ADMIN
