"""The principal registry and its API keys, in ``<data_dir>/principals.db``.

Invariants:

* a principal has an id, a kind, roles and an autonomy tier; ids are unique;
* an API key is ``grace_<key id>_<secret>``; only the key id and SHA-256 of the secret
  are stored (the secret has 256 bits of entropy, so a fast hash suffices; comparison is
  constant-time). The full key is returned once, at creation, and never again;
* a revoked key, or any key of a disabled principal, authenticates nobody.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson

from grace.errors import AuthenticationError, GovernanceError
from grace.governance.model import Principal, PrincipalKind
from grace.types import Clock

__all__ = ["KEY_PREFIX", "PrincipalRegistry"]

KEY_PREFIX: Final = "grace_"
_AUTH_CACHE_SIZE: Final = 4096

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS principals (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    roles TEXT NOT NULL,
    autonomy_tier INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    secret_sha256 BLOB NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
"""


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class PrincipalRegistry:
    """Principals and their API keys (blocking SQLite; small, indexed lookups)."""

    def __init__(self, path: Path, *, clock: Clock) -> None:
        self.path = path
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise GovernanceError(f"cannot open principal registry {path}: {e}") from e
        self._auth_cache: dict[bytes, Principal] = {}
        self._auth_version: object = None

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    def add(
        self,
        principal_id: str,
        *,
        kind: PrincipalKind,
        roles: Iterable[str] = (),
        autonomy_tier: int = 0,
        attributes: Mapping[str, Any] | None = None,
    ) -> Principal:
        """Register a principal; :class:`GovernanceError` if the id exists."""
        self._auth_cache.clear()
        principal = Principal(
            id=principal_id,
            kind=PrincipalKind(kind),
            roles=frozenset(roles),
            autonomy_tier=autonomy_tier,
            attributes=dict(attributes or {}),
        )
        try:
            self._conn.execute(
                "INSERT INTO principals(id, kind, roles, autonomy_tier, attributes, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (
                    principal.id,
                    principal.kind,
                    orjson.dumps(sorted(principal.roles)).decode(),
                    principal.autonomy_tier,
                    orjson.dumps(dict(principal.attributes)).decode(),
                    self._clock.now().isoformat(),
                ),
            )
        except sqlite3.IntegrityError as e:
            raise GovernanceError(f"principal {principal_id!r} already exists") from e
        return principal

    def get(self, principal_id: str) -> Principal | None:
        """An enabled principal, or None."""
        row = self._conn.execute(
            "SELECT id, kind, roles, autonomy_tier, attributes FROM principals "
            "WHERE id = ? AND disabled = 0",
            (principal_id,),
        ).fetchone()
        if row is None:
            return None
        return Principal(
            id=row[0],
            kind=PrincipalKind(row[1]),
            roles=frozenset(orjson.loads(row[2])),
            autonomy_tier=row[3],
            attributes=orjson.loads(row[4]),
        )

    def all(self) -> list[Principal]:
        """Every enabled principal, by id."""
        ids = [
            r[0]
            for r in self._conn.execute("SELECT id FROM principals WHERE disabled = 0 ORDER BY id")
        ]
        return [p for p in map(self.get, ids) if p is not None]

    def disable(self, principal_id: str) -> bool:
        """Disable a principal (its keys stop working); False if unknown."""
        self._auth_cache.clear()
        cur = self._conn.execute("UPDATE principals SET disabled = 1 WHERE id = ?", (principal_id,))
        return cur.rowcount == 1

    def create_key(self, principal_id: str) -> str:
        """A new API key for the principal — returned once, stored only hashed."""
        if self.get(principal_id) is None:
            raise GovernanceError(f"no enabled principal {principal_id!r}")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        self._conn.execute(
            "INSERT INTO api_keys(key_id, principal_id, secret_sha256, created_at) "
            "VALUES (?,?,?,?)",
            (key_id, principal_id, _hash(secret), self._clock.now().isoformat()),
        )
        return f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key by its id; False if unknown or already revoked."""
        self._auth_cache.clear()
        cur = self._conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (self._clock.now().isoformat(), key_id),
        )
        return cur.rowcount == 1

    def authenticate_key(self, key: str) -> Principal:
        """The principal an API key belongs to; :class:`AuthenticationError` otherwise.

        Successful answers are kept while the database is unchanged: SQLite's
        ``data_version`` moves whenever another connection (``grace keys revoke`` in another
        process) commits, and this registry's own writes clear the cache, so a revoked key
        or a disabled principal is refused on the very next request.
        """
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._auth_version:
            self._auth_cache.clear()
            self._auth_version = version
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        cached = self._auth_cache.get(digest)
        if cached is not None:
            return cached
        principal = self._authenticate_key(key)
        if len(self._auth_cache) >= _AUTH_CACHE_SIZE:
            self._auth_cache.clear()
        self._auth_cache[digest] = principal
        return principal

    def _authenticate_key(self, key: str) -> Principal:
        if not key.startswith(KEY_PREFIX):
            raise AuthenticationError("not a Grace API key")
        key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
        if not sep or not key_id or not secret:
            raise AuthenticationError("malformed API key")
        row = self._conn.execute(
            "SELECT principal_id, secret_sha256, revoked_at FROM api_keys WHERE key_id = ?",
            (key_id,),
        ).fetchone()
        # Compare even for unknown ids so timing does not reveal which ids exist.
        stored = row[1] if row is not None else b"\x00" * 32
        matches = hmac.compare_digest(stored, _hash(secret))
        if row is None or not matches or row[2] is not None:
            raise AuthenticationError("invalid or revoked API key")
        principal = self.get(row[0])
        if principal is None:
            raise AuthenticationError("the key's principal is disabled")
        return principal

    def keys_of(self, principal_id: str) -> list[tuple[str, _dt.datetime, bool]]:
        """``(key id, created at, revoked)`` of a principal's keys."""
        return [
            (r[0], _dt.datetime.fromisoformat(r[1]), r[2] is not None)
            for r in self._conn.execute(
                "SELECT key_id, created_at, revoked_at FROM api_keys WHERE principal_id = ? "
                "ORDER BY created_at",
                (principal_id,),
            )
        ]
