"""Authentication: who is asking, from verified credentials only.

Accepted credentials, in this order:

1. ``Authorization: Bearer grace_<id>_<secret>`` or ``X-API-Key: grace_…`` — an API key
   from the :class:`~grace.governance.principals.PrincipalRegistry`;
2. ``Authorization: Bearer <JWT>`` — verified with PyJWT against the configured issuer,
   audience, algorithms and keys; ``sub`` must name a registered, enabled principal;
3. ``X-Actor: <id>`` — **ignored** unless the request also carries the trusted-proxy
   credential (``X-Grace-Proxy-Token``) configured for a proxy that authenticated the
   user itself; then the actor must be a registered principal.

Anything else — no credentials, a bad key, a bad signature, an unknown subject — raises
:class:`~grace.errors.AuthenticationError` (HTTP 401). Nothing here trusts a header the
caller can choose on its own.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jwt

from grace.errors import AuthenticationError
from grace.governance.model import Principal
from grace.governance.principals import KEY_PREFIX, PrincipalRegistry

__all__ = ["Authenticator", "JWTSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JWTSettings:
    """How bearer JWTs are verified."""

    issuer: str
    audience: str
    algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA")
    keys: Sequence[str] = field(default_factory=tuple)
    """PEM public keys (or shared secrets for HS* algorithms) that may have signed tokens."""
    leeway_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("JWT verification needs at least one key")
        if "none" in {a.lower() for a in self.algorithms}:
            raise ValueError("the 'none' JWT algorithm is never accepted")


class Authenticator:
    """Turns request headers into a verified :class:`Principal` or raises."""

    def __init__(
        self,
        registry: PrincipalRegistry,
        *,
        jwt_settings: JWTSettings | None = None,
        trusted_proxy_token_sha256: str | None = None,
    ) -> None:
        self.registry = registry
        self._jwt = jwt_settings
        self._proxy_digest = (
            bytes.fromhex(trusted_proxy_token_sha256) if trusted_proxy_token_sha256 else None
        )

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal behind ``headers`` (names lower-case)."""
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        api_key = headers.get("x-api-key", "").strip()
        if scheme.lower() == "bearer" and token:
            if token.startswith(KEY_PREFIX):
                return self.registry.authenticate_key(token)
            return self._from_jwt(token)
        if api_key:
            return self.registry.authenticate_key(api_key)
        actor = headers.get("x-actor", "").strip()
        proxy = headers.get("x-grace-proxy-token", "")
        if actor and proxy and self._proxy_ok(proxy):
            principal = self.registry.get(actor)
            if principal is None:
                raise AuthenticationError(f"the proxy vouched for unknown principal {actor!r}")
            return principal
        if authorization:
            raise AuthenticationError(f"unsupported Authorization scheme {scheme!r}")
        raise AuthenticationError("no credentials: send an API key or a bearer token")

    def _proxy_ok(self, token: str) -> bool:
        if self._proxy_digest is None:
            return False
        return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self._proxy_digest)

    def _from_jwt(self, token: str) -> Principal:
        settings = self._jwt
        if settings is None:
            raise AuthenticationError("bearer JWTs are not configured on this server")
        last: Exception | None = None
        for key in settings.keys:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=list(settings.algorithms),
                    audience=settings.audience,
                    issuer=settings.issuer,
                    leeway=settings.leeway_s,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.InvalidSignatureError as e:
                last = e
                continue
            except jwt.PyJWTError as e:
                raise AuthenticationError(f"invalid bearer token: {e}") from e
            principal = self.registry.get(str(claims["sub"]))
            if principal is None:
                raise AuthenticationError(
                    f"token subject {claims['sub']!r} is not a registered principal"
                )
            return principal
        raise AuthenticationError(f"invalid bearer token: {last}") from last
