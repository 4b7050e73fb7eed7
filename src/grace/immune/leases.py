"""Incident leases: one healing run per incident across every Grace instance (ADR 0012).

A lease is a named, time-limited claim: ``claim(key, holder, ttl_s)`` succeeds when nobody
holds ``key``, when the lease expired, or when ``holder`` already holds it (idempotent);
``renew`` extends a lease only for its holder; ``release`` ends it only for its holder.
The kernel claims ``incident:<resource>:<type>`` before any healing step, renews it while
the run lasts and releases it afterwards, so instances that opened "the same" incident
(every instance's monitor saw the outage) heal it once.

Invariants:

* At most one holder at any time per key: a claim is one atomic statement (PostgreSQL's
  ``INSERT … ON CONFLICT DO UPDATE … WHERE``), decided by the row lock of the key.
* A crashed holder stops renewing; after ``ttl_s`` its lease is claimable by anyone.
* Time is one clock for all instances: the PostgreSQL server's (``clock_timestamp()``)
  unless a :class:`~grace.types.Clock` is injected (tests, single instance).
* Any store failure raises :class:`~grace.errors.ImmuneError`; the kernel then does not
  heal (fail closed).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Final, Protocol

import asyncpg
import structlog

from grace.errors import ImmuneError
from grace.types import Clock

__all__ = [
    "LEASE_SCHEMA_VERSION",
    "InMemoryLeaseStore",
    "LeaseStore",
    "PostgresLeaseStore",
    "incident_lease_key",
]

log = structlog.get_logger(__name__)


class LeaseStore(Protocol):
    """Where the kernel claims incidents (in memory, or PostgreSQL for many instances)."""

    async def claim(self, key: str, holder: str, ttl_s: float) -> bool:
        """Take ``key`` for ``ttl_s`` seconds; False if another holder's lease is live."""
        ...

    async def renew(self, key: str, holder: str, ttl_s: float) -> bool:
        """Extend ``holder``'s lease by ``ttl_s`` from now; False if it is not theirs."""
        ...

    async def release(self, key: str, holder: str) -> None:
        """End ``holder``'s lease (nothing happens if it is not theirs)."""
        ...


def incident_lease_key(resource: str, anomaly_type: str) -> str:
    """The lease key of an incident: its resource and anomaly type."""
    return f"incident:{resource}:{anomaly_type}"


def _check(key: str, holder: str, ttl_s: float | None = None) -> None:
    if not key or not holder:
        raise ImmuneError(f"a lease needs a key and a holder (got {key!r}, {holder!r})")
    if ttl_s is not None and not ttl_s > 0:
        raise ImmuneError(f"lease ttl_s must be positive, got {ttl_s!r}")


class InMemoryLeaseStore:
    """Leases of one process (the default: a single instance has nobody to race)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[str, _dt.datetime]] = {}
        self.renewals = 0
        """Successful renewals so far (for tests and stats)."""

    async def claim(self, key: str, holder: str, ttl_s: float) -> bool:
        """Take ``key`` unless another holder's lease is live."""
        _check(key, holder, ttl_s)
        now = self._clock.now()
        current = self._leases.get(key)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._leases[key] = (holder, now + _dt.timedelta(seconds=ttl_s))
        return True

    async def renew(self, key: str, holder: str, ttl_s: float) -> bool:
        """Extend ``holder``'s lease; False if it is not (or no longer) theirs."""
        _check(key, holder, ttl_s)
        current = self._leases.get(key)
        if current is None or current[0] != holder:
            return False
        self._leases[key] = (holder, self._clock.now() + _dt.timedelta(seconds=ttl_s))
        self.renewals += 1
        return True

    async def release(self, key: str, holder: str) -> None:
        """End ``holder``'s lease."""
        _check(key, holder)
        current = self._leases.get(key)
        if current is not None and current[0] == holder:
            del self._leases[key]

    def holder(self, key: str) -> str | None:
        """Who holds ``key`` now (None if nobody or expired)."""
        current = self._leases.get(key)
        if current is None or current[1] <= self._clock.now():
            return None
        return current[0]


# -- PostgreSQL ---------------------------------------------------------------------------

_MIGRATE_LOCK: Final = 0x47524930
"""First key of the migration advisory lock (the second is the schema name's hash)."""

_V1: Final = """
CREATE TABLE immune_leases (
    key text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
"""

_MIGRATIONS: Final[tuple[tuple[int, str], ...]] = ((1, _V1),)
LEASE_SCHEMA_VERSION: Final = _MIGRATIONS[-1][0]

# $3 is the injected clock's time, or NULL for the server's clock (one clock for everyone).
_NOW: Final = "COALESCE($3::timestamptz, clock_timestamp())"
_CLAIM: Final = f"""
INSERT INTO immune_leases AS l (key, holder, expires_at)
VALUES ($1, $2, {_NOW} + make_interval(secs => $4))
ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at <= {_NOW}
RETURNING l.holder
"""  # noqa: S608 - constants only
_RENEW: Final = f"""
UPDATE immune_leases SET expires_at = {_NOW} + make_interval(secs => $4)
WHERE key = $1 AND holder = $2
RETURNING holder
"""  # noqa: S608 - constants only
_RELEASE: Final = "DELETE FROM immune_leases WHERE key = $1 AND holder = $2"

_FAILURES: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def _migrate(conn: Any) -> None:
    """Create or upgrade the lease tables under the migration lock (at most once each)."""
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", _MIGRATE_LOCK
        )
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS immune_meta (key text PRIMARY KEY, value text NOT NULL)"
        )
        stored = await conn.fetchval("SELECT value FROM immune_meta WHERE key = 'schema_version'")
        version = int(stored) if stored is not None and stored.isdigit() else 0
        if stored is not None and version == 0:
            raise ImmuneError(f"immune_meta records schema version {stored!r}")
        if version > LEASE_SCHEMA_VERSION:
            raise ImmuneError(
                f"the immune lease schema is at version {version}, written by a newer Grace; "
                f"this Grace knows versions up to {LEASE_SCHEMA_VERSION} and will not touch it"
            )
        for number, sql in _MIGRATIONS:
            if number > version:
                await conn.execute(sql)
                log.info("immune_leases_migrated", schema_version=number)
        await conn.execute(
            "INSERT INTO immune_meta (key, value) VALUES ('schema_version', $1) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            str(LEASE_SCHEMA_VERSION),
        )


class PostgresLeaseStore:
    """Leases in PostgreSQL (``immune_leases``), shared by every instance of a deployment.

    Open with :meth:`open`, which applies the versioned schema; close with :meth:`close`.
    """

    def __init__(self, pool: Any, *, clock: Clock | None = None) -> None:
        self._pool = pool
        self._clock = clock

    @classmethod
    async def open(
        cls, dsn: str, *, clock: Clock | None = None, pool_size: int = 2
    ) -> PostgresLeaseStore:
        """Connect to ``dsn`` (asyncpg), migrate the schema, return the store."""
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                timeout=10.0,
                server_settings={"application_name": "grace-immune-leases"},
            )
        except _FAILURES as e:
            raise ImmuneError(f"cannot open the immune lease store: {e!r}") from e
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
        except BaseException as e:
            await pool.close()
            if isinstance(e, _FAILURES):
                raise ImmuneError(f"cannot migrate the immune lease store: {e!r}") from e
            raise
        return cls(pool, clock=clock)

    async def close(self) -> None:
        """Close the connections."""
        await self._pool.close()

    def _now(self) -> _dt.datetime | None:
        return None if self._clock is None else self._clock.now()

    async def _fetch(self, sql: str, key: str, holder: str, ttl_s: float) -> bool:
        try:
            row = await self._pool.fetchrow(sql, key, holder, self._now(), float(ttl_s))
        except _FAILURES as e:
            raise ImmuneError(f"the immune lease store failed on {key!r}: {e!r}") from e
        return row is not None

    async def claim(self, key: str, holder: str, ttl_s: float) -> bool:
        """Take ``key`` unless another holder's lease is live (one atomic statement)."""
        _check(key, holder, ttl_s)
        return await self._fetch(_CLAIM, key, holder, ttl_s)

    async def renew(self, key: str, holder: str, ttl_s: float) -> bool:
        """Extend ``holder``'s lease; False if another instance took it over."""
        _check(key, holder, ttl_s)
        return await self._fetch(_RENEW, key, holder, ttl_s)

    async def release(self, key: str, holder: str) -> None:
        """End ``holder``'s lease."""
        _check(key, holder)
        try:
            await self._pool.execute(_RELEASE, key, holder)
        except _FAILURES as e:
            raise ImmuneError(f"the immune lease store failed on {key!r}: {e!r}") from e

    async def holder(self, key: str) -> str | None:
        """Who holds ``key`` now (None if nobody or expired)."""
        try:
            value = await self._pool.fetchval(
                "SELECT holder FROM immune_leases WHERE key = $1 AND expires_at > "
                "COALESCE($2::timestamptz, clock_timestamp())",
                key,
                self._now(),
            )
        except _FAILURES as e:
            raise ImmuneError(f"the immune lease store failed on {key!r}: {e!r}") from e
        return None if value is None else str(value)
