"""Identity comes from verified credentials only: API keys, JWTs, a vouching proxy."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from grace.errors import AuthenticationError, GovernanceError
from grace.governance.auth import Authenticator, JWTSettings
from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.testing import FakeClock

ISSUER, AUDIENCE = "https://idp.example", "grace"
SIGNING = Ed25519PrivateKey.generate()
PUBLIC_PEM = (
    SIGNING.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
PROXY_TOKEN = "proxy-secret-123"  # noqa: S105 - a test credential


@pytest.fixture
def registry(tmp_path: Path) -> PrincipalRegistry:
    """A registry with alice (human, approver) and agent-7 (agent, tier 2)."""
    reg = PrincipalRegistry(tmp_path / "principals.db", clock=FakeClock())
    reg.add("alice", kind=PrincipalKind.HUMAN, roles=["approver"])
    reg.add("agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2)
    return reg


@pytest.fixture
def auth(registry: PrincipalRegistry) -> Authenticator:
    """An authenticator with JWT and a trusted proxy configured."""
    return Authenticator(
        registry,
        jwt_settings=JWTSettings(
            issuer=ISSUER, audience=AUDIENCE, algorithms=("EdDSA",), keys=(PUBLIC_PEM,)
        ),
        trusted_proxy_token_sha256=hashlib.sha256(PROXY_TOKEN.encode()).hexdigest(),
    )


def token(sub: str = "alice", *, key: Ed25519PrivateKey = SIGNING, **claims: object) -> str:
    """A signed JWT (valid unless claims say otherwise)."""
    now = dt.datetime.now(dt.UTC)
    body: dict[str, object] = {
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + dt.timedelta(minutes=5),
    }
    body.update(claims)
    return jwt.encode(body, key, algorithm="EdDSA")


def test_api_key_is_shown_once_and_stored_hashed(
    registry: PrincipalRegistry, tmp_path: Path
) -> None:
    """A created key authenticates its principal; the database holds no plaintext secret."""
    key = registry.create_key("agent-7")
    assert registry.authenticate_key(key).id == "agent-7"
    secret = key.rsplit("_", 1)[1]
    raw = (tmp_path / "principals.db").read_bytes()
    assert secret.encode() not in raw


def test_revoked_bad_and_disabled_keys_fail(registry: PrincipalRegistry) -> None:
    """Revoked keys, tampered secrets, malformed keys and disabled principals are refused."""
    key = registry.create_key("agent-7")
    with pytest.raises(AuthenticationError, match="invalid"):
        registry.authenticate_key(key[:-2] + "xx")
    with pytest.raises(AuthenticationError, match="malformed"):
        registry.authenticate_key("grace_onlyid")
    key_id = key.split("_")[1]
    assert registry.revoke_key(key_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        registry.authenticate_key(key)
    other = registry.create_key("alice")
    registry.disable("alice")
    with pytest.raises(AuthenticationError, match="disabled"):
        registry.authenticate_key(other)
    with pytest.raises(GovernanceError, match="no enabled principal"):
        registry.create_key("alice")


def test_duplicate_principal_is_refused(registry: PrincipalRegistry) -> None:
    """Principal ids are unique."""
    with pytest.raises(GovernanceError, match="already exists"):
        registry.add("alice", kind=PrincipalKind.HUMAN)
    assert [p.id for p in registry.all()] == ["agent-7", "alice"]


def test_api_key_in_either_header(auth: Authenticator, registry: PrincipalRegistry) -> None:
    """Bearer and X-API-Key both carry API keys."""
    key = registry.create_key("agent-7")
    assert auth.authenticate({"authorization": f"Bearer {key}"}).id == "agent-7"
    assert auth.authenticate({"x-api-key": key}).id == "agent-7"


def test_valid_jwt_names_a_registered_principal(auth: Authenticator) -> None:
    """A token signed by the configured key, for this audience and issuer, authenticates."""
    principal = auth.authenticate({"authorization": f"Bearer {token()}"})
    assert principal.id == "alice"
    assert "approver" in principal.roles


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: token(exp=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)), "expired"),
        (lambda: token(aud="someone-else"), "(?i)audience"),
        (lambda: token(iss="https://evil.example"), "(?i)issuer"),
        (lambda: token(key=Ed25519PrivateKey.generate()), "invalid bearer token"),
        (lambda: token(sub="mallory"), "not a registered principal"),
        (lambda: jwt.encode({"sub": "alice"}, key="", algorithm="none"), "invalid bearer token"),
        (lambda: "not.a.jwt", "invalid bearer token"),
    ],
)
def test_bad_jwts_are_refused(auth: Authenticator, make: object, problem: str) -> None:
    """Expired, wrong audience/issuer/key, unknown subject, alg=none and garbage fail."""
    bearer = make()  # type: ignore[operator]
    with pytest.raises(AuthenticationError, match=problem):
        auth.authenticate({"authorization": f"Bearer {bearer}"})


def test_x_actor_alone_is_ignored(auth: Authenticator) -> None:
    """X-Actor: admin without a proxy credential is no identity at all."""
    with pytest.raises(AuthenticationError, match="no credentials"):
        auth.authenticate({"x-actor": "alice"})
    with pytest.raises(AuthenticationError, match="no credentials"):
        auth.authenticate({"x-actor": "alice", "x-grace-proxy-token": "guess"})


def test_trusted_proxy_may_vouch_for_a_registered_actor(auth: Authenticator) -> None:
    """With the proxy credential, X-Actor names the principal (only registered ones)."""
    headers = {"x-actor": "alice", "x-grace-proxy-token": PROXY_TOKEN}
    assert auth.authenticate(headers).id == "alice"
    with pytest.raises(AuthenticationError, match="unknown principal"):
        auth.authenticate({"x-actor": "root", "x-grace-proxy-token": PROXY_TOKEN})


def test_jwt_settings_refuse_none_and_keyless(registry: PrincipalRegistry) -> None:
    """The none algorithm and a key-less configuration are configuration errors."""
    with pytest.raises(ValueError, match="none"):
        JWTSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=("none",), keys=("k",))
    with pytest.raises(ValueError, match="at least one key"):
        JWTSettings(issuer=ISSUER, audience=AUDIENCE)
    no_jwt = Authenticator(registry)
    with pytest.raises(AuthenticationError, match="not configured"):
        no_jwt.authenticate({"authorization": f"Bearer {token()}"})
    with pytest.raises(AuthenticationError, match="unsupported"):
        no_jwt.authenticate({"authorization": "Basic YWxpY2U6cHc="})


def test_a_key_revoked_by_another_process_is_refused_on_the_next_request(tmp_path: Path) -> None:
    """Cached authentications end when another connection (the CLI) revokes the key."""
    server = PrincipalRegistry(tmp_path / "principals.db", clock=FakeClock())
    cli = PrincipalRegistry(tmp_path / "principals.db", clock=FakeClock())
    try:
        server.add("ops-bot", kind=PrincipalKind.SERVICE, roles=["operator"])
        key = server.create_key("ops-bot")
        assert server.authenticate_key(key).id == "ops-bot"
        assert server.authenticate_key(key).id == "ops-bot"  # now from the cache
        key_id = key.removeprefix("grace_").partition("_")[0]
        assert cli.revoke_key(key_id)
        with pytest.raises(AuthenticationError):
            server.authenticate_key(key)
    finally:
        server.close()
        cli.close()


def test_a_principal_disabled_in_process_loses_its_cached_key(tmp_path: Path) -> None:
    """The registry's own writes clear the cache too."""
    registry = PrincipalRegistry(tmp_path / "principals.db", clock=FakeClock())
    try:
        registry.add("agent-9", kind=PrincipalKind.AGENT)
        key = registry.create_key("agent-9")
        assert registry.authenticate_key(key).id == "agent-9"
        assert registry.disable("agent-9")
        with pytest.raises(AuthenticationError):
            registry.authenticate_key(key)
    finally:
        registry.close()
