"""The principal registry's PostgreSQL store: shared by every instance, read from memory.

The registry's API is synchronous (the ASGI middleware authenticates every request with
it), so reads never touch the database: they are served from an immutable in-memory
snapshot of the principals and key hashes, replaced whole when it changes.

Invariants:

* every write bumps ``gov_counters.principals`` and sends ``pg_notify`` in its own
  transaction; the writer reloads its snapshot before returning, so its next read sees
  its write;
* a notification (another instance wrote) reloads the snapshot at once; a heartbeat every
  ``heartbeat_s`` compares the stored counter with the snapshot's, so a missed
  notification (listener reconnecting) costs at most one heartbeat, and re-LISTENs;
* fail closed: ``version()`` (checked before every authentication) raises
  :class:`AuthenticationError` once no refresh or heartbeat succeeded for
  ``max_stale_s`` seconds — a revoked key must not keep working because this instance
  lost the database. The snapshot's own revocations keep being refused regardless.

The database work runs on a private event loop in a daemon thread; the synchronous
writes wait for it (``run_coroutine_threadsafe``).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import asyncpg
import orjson
import structlog

from grace.errors import AuthenticationError, GovernanceError
from grace.governance._pg_schema import channel_name, migrate
from grace.governance.model import Principal, PrincipalKind
from grace.types import Clock

__all__ = ["PostgresPrincipals", "describe_dsn"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_CONNECT_TIMEOUT_S: Final = 10.0
_CALL_TIMEOUT_S: Final = 30.0
_DB_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def describe_dsn(dsn: str) -> str:
    """``postgresql://host/db`` for messages: no user, password or parameters."""
    rest = dsn.split("://", 1)[-1]
    netloc, _, path = rest.partition("/")
    host = netloc.rpartition("@")[2] or "localhost"
    return f"postgresql://{host}/{path.split('?', 1)[0]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Snapshot:
    generation: int
    principals: dict[str, tuple[Principal, bool]] = field(default_factory=dict)
    """id → (principal, disabled)."""
    keys: dict[str, tuple[str, bytes, _dt.datetime, bool]] = field(default_factory=dict)
    """key id → (principal id, secret SHA-256, created at, revoked)."""


class PostgresPrincipals:
    """Principals and key hashes in PostgreSQL; see the module docstring."""

    def __init__(self, dsn: str, *, clock: Clock, max_stale_s: float, heartbeat_s: float) -> None:
        if max_stale_s <= heartbeat_s:
            raise GovernanceError(
                f"max_stale_s ({max_stale_s}) must exceed heartbeat_s ({heartbeat_s})"
            )
        self._dsn = dsn
        self.location = describe_dsn(dsn)
        self._clock = clock
        self._max_stale = _dt.timedelta(seconds=max_stale_s)
        self._heartbeat_s = heartbeat_s
        self._snapshot = _Snapshot(generation=-1)
        self._fresh_at = clock.now()
        self._stale_logged = False
        self._pool: Any = None
        self._listener: Any = None
        self._channel = ""
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="grace-principals-pg", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._open())
        except BaseException:
            self._stop_loop()
            raise

    # -- the private loop --------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(_CALL_TIMEOUT_S)
        except TimeoutError as e:
            future.cancel()
            raise GovernanceError(f"principal registry {self.location} did not answer") from e

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CALL_TIMEOUT_S)
        self._loop.close()

    async def _open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=2,
                timeout=_CONNECT_TIMEOUT_S,
                server_settings={"application_name": "grace-principals"},
            )
            async with self._pool.acquire() as conn:
                schema = await migrate(conn, self.location)
            self._channel = channel_name(schema)
            await self._listen()
            await self._reload()
        except BaseException as e:
            if self._listener is not None:
                self._listener.terminate()
            if self._pool is not None:
                self._pool.terminate()
            if isinstance(e, _DB_ERRORS):
                raise GovernanceError(f"cannot open principal registry {self.location}: {e}") from e
            raise
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=_CONNECT_TIMEOUT_S,
            server_settings={"application_name": "grace-principals-listen"},
        )
        try:
            await conn.add_listener(self._channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._listener = conn

    def _notified(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._schedule_reload()

    def _schedule_reload(self) -> None:
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True  # coalesce a burst of notifications into one more load
            return
        self._reload_task = asyncio.get_running_loop().create_task(self._reload_quietly())

    async def _reload_quietly(self) -> None:
        while True:
            self._reload_again = False
            try:
                await self._reload()
            except _DB_ERRORS as e:
                log.warning("principals_reload_failed", location=self.location, error=repr(e))
                return  # the heartbeat retries
            if not self._reload_again:
                return

    async def _reload(self) -> None:
        started = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            generation = await conn.fetchval("SELECT n FROM gov_counters WHERE name = 'principals'")
            principals = await conn.fetch(
                "SELECT id, kind, roles::text, autonomy_tier, attributes::text, disabled "
                "FROM gov_principals"
            )
            keys = await conn.fetch(
                "SELECT key_id, principal_id, secret_sha256, created_at, revoked_at "
                "FROM gov_api_keys"
            )
        snapshot = _Snapshot(
            generation=int(generation),
            principals={
                r[0]: (
                    Principal(
                        id=r[0],
                        kind=PrincipalKind(r[1]),
                        roles=frozenset(orjson.loads(r[2])),
                        autonomy_tier=r[3],
                        attributes=orjson.loads(r[4]),
                    ),
                    bool(r[5]),
                )
                for r in principals
            },
            keys={r[0]: (r[1], bytes(r[2]), r[3], r[4] is not None) for r in keys},
        )
        if snapshot.generation >= self._snapshot.generation:
            self._snapshot = snapshot
        self._mark_fresh(started)

    def _mark_fresh(self, at: _dt.datetime) -> None:
        self._fresh_at = max(self._fresh_at, at)
        if self._stale_logged:
            log.info("principals_snapshot_fresh_again", location=self.location)
            self._stale_logged = False

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            started = self._clock.now()
            try:
                if self._listener is None or self._listener.is_closed():
                    if self._listener is not None:
                        self._listener.terminate()
                        self._listener = None
                    await self._listen()
                    log.info("principals_listener_reconnected", location=self.location)
                    await self._reload()  # notifications sent while it was down are lost
                    continue
                generation = await self._listener.fetchval(
                    "SELECT n FROM gov_counters WHERE name = 'principals'"
                )
                if generation != self._snapshot.generation:
                    await self._reload()
                else:
                    self._mark_fresh(started)
            except _DB_ERRORS as e:
                if self._listener is not None:
                    self._listener.terminate()
                    self._listener = None
                if not self._stale_logged:
                    log.warning(
                        "principals_snapshot_not_refreshed",
                        location=self.location,
                        error=repr(e),
                        refuses_keys_after_s=self._max_stale.total_seconds(),
                    )
                    self._stale_logged = True

    async def _write(self, sql: str, *args: Any) -> str:
        async with self._pool.acquire() as conn, conn.transaction():
            status: str = await conn.execute(sql, *args)
            if not status.endswith(" 0"):
                await conn.execute("UPDATE gov_counters SET n = n + 1 WHERE name = 'principals'")
                await conn.execute("SELECT pg_notify($1, 'principals')", self._channel)
        await self._reload()
        return status

    def _run_write(self, sql: str, *args: Any) -> str:
        try:
            return self._call(self._write(sql, *args))
        except asyncpg.UniqueViolationError:
            raise
        except _DB_ERRORS as e:
            raise GovernanceError(f"principal registry {self.location}: {e}") from e

    # -- the store protocol ------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat, close the connections and the private loop."""

        async def shut() -> None:
            for task in (self._heartbeat, self._reload_task):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if self._listener is not None:
                self._listener.terminate()
            await self._pool.close()

        if self._loop.is_closed():
            return
        try:
            self._call(shut())
        except (*_DB_ERRORS, GovernanceError) as e:
            log.warning("principals_close_failed", location=self.location, error=repr(e))
        finally:
            self._stop_loop()

    def version(self) -> object:
        if self._clock.now() - self._fresh_at > self._max_stale:
            raise AuthenticationError(
                f"the principal registry ({self.location}) could not be refreshed for over "
                f"{self._max_stale.total_seconds():g} s; API keys are refused until it can"
            )
        return self._snapshot.generation

    def insert(self, principal: Principal, created_at: _dt.datetime) -> None:
        try:
            self._run_write(
                "INSERT INTO gov_principals (id, kind, roles, autonomy_tier, attributes, "
                "created_at) VALUES ($1, $2, $3::text::jsonb, $4, $5::text::jsonb, $6)",
                principal.id,
                str(principal.kind),
                orjson.dumps(sorted(principal.roles)).decode(),
                principal.autonomy_tier,
                orjson.dumps(dict(principal.attributes)).decode(),
                created_at,
            )
        except asyncpg.UniqueViolationError as e:
            raise GovernanceError(f"principal {principal.id!r} already exists") from e

    def principal(self, principal_id: str) -> Principal | None:
        found = self._snapshot.principals.get(principal_id)
        return None if found is None or found[1] else found[0]

    def enabled_ids(self) -> list[str]:
        return sorted(
            pid for pid, (_, disabled) in self._snapshot.principals.items() if not disabled
        )

    def disable(self, principal_id: str) -> bool:
        status = self._run_write(
            "UPDATE gov_principals SET disabled = true WHERE id = $1", principal_id
        )
        return status == "UPDATE 1"

    def insert_key(
        self, key_id: str, principal_id: str, digest: bytes, created_at: _dt.datetime
    ) -> None:
        try:
            self._run_write(
                "INSERT INTO gov_api_keys (key_id, principal_id, secret_sha256, created_at) "
                "VALUES ($1, $2, $3, $4)",
                key_id,
                principal_id,
                digest,
                created_at,
            )
        except asyncpg.PostgresError as e:  # a unique or foreign-key violation
            raise GovernanceError(f"cannot store a key for {principal_id!r}: {e}") from e

    def revoke_key(self, key_id: str, at: _dt.datetime) -> bool:
        status = self._run_write(
            "UPDATE gov_api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
            key_id,
            at,
        )
        return status == "UPDATE 1"

    def key(self, key_id: str) -> tuple[str, bytes, bool] | None:
        found = self._snapshot.keys.get(key_id)
        return None if found is None else (found[0], found[1], found[3])

    def keys_of(self, principal_id: str) -> list[tuple[str, _dt.datetime, bool]]:
        return sorted(
            (
                (key_id, created, revoked)
                for key_id, (pid, _, created, revoked) in self._snapshot.keys.items()
                if pid == principal_id
            ),
            key=lambda k: (k[1], k[0]),
        )
