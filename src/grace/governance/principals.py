"""The principal registry and its API keys: ``<data_dir>/principals.db`` (SQLite) or, for
several instances, PostgreSQL (:meth:`PrincipalRegistry.open_postgres`, ADR 0011).

Invariants:

* a principal has an id, a kind, roles and an autonomy tier; ids are unique;
* an API key is ``grace_<key id>_<secret>``; only the key id and SHA-256 of the secret
  are stored (the secret has 256 bits of entropy, so a fast hash suffices; comparison is
  constant-time). The full key is returned once, at creation, and never again;
* a revoked key, or any key of a disabled principal, authenticates nobody;
* the validation, hashing and key checks live here once; a :class:`_Store` only stores.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

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


class _Store(Protocol):
    """Where principals and key hashes are kept (SQLite here, PostgreSQL in ``_pg_principals``)."""

    def close(self) -> None: ...
    def version(self) -> object:
        """Changes whenever any writer changed the data (raises when that cannot be known)."""
        ...

    def insert(self, principal: Principal, created_at: _dt.datetime) -> None: ...
    def principal(self, principal_id: str) -> Principal | None: ...
    def enabled_ids(self) -> list[str]: ...
    def disable(self, principal_id: str) -> bool: ...
    def insert_key(
        self, key_id: str, principal_id: str, digest: bytes, created_at: _dt.datetime
    ) -> None: ...
    def revoke_key(self, key_id: str, at: _dt.datetime) -> bool: ...
    def key(self, key_id: str) -> tuple[str, bytes, bool] | None:
        """``(principal id, secret SHA-256, revoked)`` of a key."""
        ...

    def keys_of(self, principal_id: str) -> list[tuple[str, _dt.datetime, bool]]: ...


class _SqliteStore:
    """The embedded store: one SQLite file, read on every lookup."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise GovernanceError(f"cannot open principal registry {path}: {e}") from e

    def close(self) -> None:
        self._conn.close()

    def version(self) -> object:
        # data_version moves whenever another connection commits.
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def insert(self, principal: Principal, created_at: _dt.datetime) -> None:
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
                    created_at.isoformat(),
                ),
            )
        except sqlite3.IntegrityError as e:
            raise GovernanceError(f"principal {principal.id!r} already exists") from e

    def principal(self, principal_id: str) -> Principal | None:
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

    def enabled_ids(self) -> list[str]:
        return [
            r[0]
            for r in self._conn.execute("SELECT id FROM principals WHERE disabled = 0 ORDER BY id")
        ]

    def disable(self, principal_id: str) -> bool:
        cur = self._conn.execute("UPDATE principals SET disabled = 1 WHERE id = ?", (principal_id,))
        return cur.rowcount == 1

    def insert_key(
        self, key_id: str, principal_id: str, digest: bytes, created_at: _dt.datetime
    ) -> None:
        self._conn.execute(
            "INSERT INTO api_keys(key_id, principal_id, secret_sha256, created_at) "
            "VALUES (?,?,?,?)",
            (key_id, principal_id, digest, created_at.isoformat()),
        )

    def revoke_key(self, key_id: str, at: _dt.datetime) -> bool:
        cur = self._conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (at.isoformat(), key_id),
        )
        return cur.rowcount == 1

    def key(self, key_id: str) -> tuple[str, bytes, bool] | None:
        row = self._conn.execute(
            "SELECT principal_id, secret_sha256, revoked_at FROM api_keys WHERE key_id = ?",
            (key_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2] is not None)

    def keys_of(self, principal_id: str) -> list[tuple[str, _dt.datetime, bool]]:
        return [
            (r[0], _dt.datetime.fromisoformat(r[1]), r[2] is not None)
            for r in self._conn.execute(
                "SELECT key_id, created_at, revoked_at FROM api_keys WHERE principal_id = ? "
                "ORDER BY created_at",
                (principal_id,),
            )
        ]


class PrincipalRegistry:
    """Principals and their API keys (synchronous, small lookups).

    ``PrincipalRegistry(path, clock=…)`` keeps them in a SQLite file;
    :meth:`open_postgres` in PostgreSQL, shared by every instance, read from an in-memory
    snapshot kept current by LISTEN/NOTIFY.
    """

    def __init__(self, path: Path, *, clock: Clock) -> None:
        self._setup(str(path), clock, _SqliteStore(path))
        self.path: Path | None = path

    def _setup(self, location: str, clock: Clock, store: _Store) -> None:
        self.location = location
        """Where the registry is kept (a file, or a PostgreSQL URL without credentials)."""
        self.path = None
        self._clock = clock
        self._store = store
        self._auth_cache: dict[bytes, Principal] = {}
        self._auth_version: object = None

    @classmethod
    def open_postgres(
        cls,
        dsn: str,
        *,
        clock: Clock,
        max_stale_s: float = 15.0,
        heartbeat_s: float = 1.0,
    ) -> PrincipalRegistry:
        """The registry in PostgreSQL at ``dsn`` (tables migrated on open).

        Blocking (connects, migrates, loads the snapshot): call it from a worker thread in
        async code. When no refresh succeeded for ``max_stale_s`` seconds (database or
        listener unreachable), every API key is refused until one does.
        """
        from grace.governance._pg_principals import PostgresPrincipals

        store = PostgresPrincipals(
            dsn, clock=clock, max_stale_s=max_stale_s, heartbeat_s=heartbeat_s
        )
        registry = cls.__new__(cls)
        registry._setup(store.location, clock, store)
        return registry

    def close(self) -> None:
        """Close the database."""
        self._store.close()

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
        self._store.insert(principal, self._clock.now())
        return principal

    def get(self, principal_id: str) -> Principal | None:
        """An enabled principal, or None."""
        return self._store.principal(principal_id)

    def all(self) -> list[Principal]:
        """Every enabled principal, by id."""
        return [p for p in map(self.get, self._store.enabled_ids()) if p is not None]

    def disable(self, principal_id: str) -> bool:
        """Disable a principal (its keys stop working); False if unknown."""
        self._auth_cache.clear()
        return self._store.disable(principal_id)

    def create_key(self, principal_id: str) -> str:
        """A new API key for the principal — returned once, stored only hashed."""
        if self.get(principal_id) is None:
            raise GovernanceError(f"no enabled principal {principal_id!r}")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        self._store.insert_key(key_id, principal_id, _hash(secret), self._clock.now())
        return f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key by its id; False if unknown or already revoked."""
        self._auth_cache.clear()
        return self._store.revoke_key(key_id, self._clock.now())

    def authenticate_key(self, key: str) -> Principal:
        """The principal an API key belongs to; :class:`AuthenticationError` otherwise.

        Successful answers are kept while the stored data is unchanged: the store's version
        moves whenever any writer commits (SQLite's ``data_version`` for ``grace keys
        revoke`` in another process; the PostgreSQL snapshot's generation for another
        instance), and this registry's own writes clear the cache, so a revoked key or a
        disabled principal is refused on the very next request once the change is known.
        A PostgreSQL store that cannot tell whether it is current refuses every key.
        """
        version = self._store.version()
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
        row = self._store.key(key_id)
        # Compare even for unknown ids so timing does not reveal which ids exist.
        stored = row[1] if row is not None else b"\x00" * 32
        matches = hmac.compare_digest(stored, _hash(secret))
        if row is None or not matches or row[2]:
            raise AuthenticationError("invalid or revoked API key")
        principal = self.get(row[0])
        if principal is None:
            raise AuthenticationError("the key's principal is disabled")
        return principal

    def keys_of(self, principal_id: str) -> list[tuple[str, _dt.datetime, bool]]:
        """``(key id, created at, revoked)`` of a principal's keys."""
        return self._store.keys_of(principal_id)
