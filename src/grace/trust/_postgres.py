"""The trust store's PostgreSQL storage, shared by every instance of a deployment (ADR 0013).

Tables live in the connection's current schema, prefixed ``trust_`` because the ledger,
the governance stores and the lease store share the database:

* ``trust_meta(key, value)``: ``format = grace-trust`` and ``schema_version``; versioned
  migrations run under their own advisory lock and a newer version is refused;
* ``trust_subjects``: one row per subject — decayed counts as of ``updated_at``,
  quarantine, ``ledger_seq`` of its last change, ``version`` (0 only for the placeholder
  a change inserts for a new subject inside its own transaction) and ``change_seq``;
* ``trust_counter(name, n)``: ``changes`` moves with every change, in the change's
  transaction, just before its commit.

Invariants:

* **No lost update across instances.** A change inserts the subject's row if absent
  (``ON CONFLICT DO NOTHING``), locks it with ``SELECT … FOR UPDATE``, computes from the
  committed latest state, writes, appends the ledger entry, bumps the counter and commits;
  a failed or unconfirmed append raises :class:`TrustError` and rolls everything back.
* **Ordered change numbers.** The counter row is locked until commit, so changes commit
  in ``change_seq`` order: a snapshot that read counter ``n`` has seen every row with
  ``change_seq <= n``, and a reload fetches only rows with ``change_seq > watermark``.
* **Fresh snapshot.** Each change ``pg_notify``s (delivered on commit); every instance
  reloads the changed rows at once. A heartbeat every ``heartbeat_s`` compares the
  counter with the watermark, so a missed notification costs one heartbeat, and
  reconnects a lost listener (then reloads). The writer applies its own change to its
  snapshot before returning. A row replaces a snapshot entry only if its ``version`` is
  newer, so reloads and the writer's own update can arrive in any order.
* **Fail closed.** If no reload or heartbeat succeeded for ``max_stale_s`` (measured on a
  monotonic clock, not the injected wall clock), :meth:`stale` is True and the store
  reports every composite as 0.0; a warning is logged once, and the first successful
  refresh lifts it.
* **Cancellation-safe.** A change runs in its own task, shielded from the caller's
  cancellation; :meth:`close` waits for the changes in flight.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import asyncpg
import structlog

from grace import _pgschema
from grace.errors import TrustError
from grace.ledger.audit import AuditSink
from grace.trust._backend import Change, Mutation, append_change
from grace.trust.model import Dimension, SubjectState, Tally, TrustScore

__all__ = ["FORMAT", "SCHEMA_VERSION", "PostgresTrustBackend", "channel_name", "migrate"]

log = structlog.get_logger(__name__)

FORMAT: Final = "grace-trust"
_MIGRATE_LOCK: Final = 0x47525452  # "GRTR"
_CONNECT_TIMEOUT_S: Final = 10.0
_DB_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

_V1: Final = """
CREATE TABLE trust_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE trust_counter (name text PRIMARY KEY, n bigint NOT NULL);
INSERT INTO trust_counter (name, n) VALUES ('changes', 0);
CREATE TABLE trust_subjects (
    subject_id text PRIMARY KEY,
    reliability_s double precision NOT NULL CHECK (reliability_s >= 0),
    reliability_f double precision NOT NULL CHECK (reliability_f >= 0),
    governance_compliance_s double precision NOT NULL CHECK (governance_compliance_s >= 0),
    governance_compliance_f double precision NOT NULL CHECK (governance_compliance_f >= 0),
    verification_record_s double precision NOT NULL CHECK (verification_record_s >= 0),
    verification_record_f double precision NOT NULL CHECK (verification_record_f >= 0),
    anomaly_history_s double precision NOT NULL CHECK (anomaly_history_s >= 0),
    anomaly_history_f double precision NOT NULL CHECK (anomaly_history_f >= 0),
    updated_at timestamptz NOT NULL,
    quarantined boolean NOT NULL,
    quarantine_reason text NOT NULL DEFAULT '',
    quarantined_by text NOT NULL DEFAULT '',
    ledger_seq bigint,
    version bigint NOT NULL CHECK (version >= 0),
    change_seq bigint NOT NULL
);
CREATE INDEX trust_subjects_change ON trust_subjects (change_seq);
"""

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = ((1, _V1),)
"""``(version, SQL)`` in order; a database at version ``v`` gets every later one applied."""

SCHEMA_VERSION: Final = MIGRATIONS[-1][0]

# Column order of the tallies, fixed by the schema above.
_DIMENSIONS: Final = (
    Dimension.RELIABILITY,
    Dimension.GOVERNANCE_COMPLIANCE,
    Dimension.VERIFICATION_RECORD,
    Dimension.ANOMALY_HISTORY,
)
_SELECT: Final = (
    "SELECT subject_id, reliability_s, reliability_f, governance_compliance_s, "
    "governance_compliance_f, verification_record_s, verification_record_f, "
    "anomaly_history_s, anomaly_history_f, updated_at, quarantined, ledger_seq, version "
    "FROM trust_subjects"
)
_PLACEHOLDER: Final = (
    "INSERT INTO trust_subjects (subject_id, reliability_s, reliability_f, "
    "governance_compliance_s, governance_compliance_f, verification_record_s, "
    "verification_record_f, anomaly_history_s, anomaly_history_f, updated_at, quarantined, "
    "version, change_seq) VALUES ($1, 0, 0, 0, 0, 0, 0, 0, 0, $2, false, 0, 0) "
    "ON CONFLICT (subject_id) DO NOTHING"
)
_UPDATE: Final = """
UPDATE trust_subjects SET
    reliability_s = $2, reliability_f = $3,
    governance_compliance_s = $4, governance_compliance_f = $5,
    verification_record_s = $6, verification_record_f = $7,
    anomaly_history_s = $8, anomaly_history_f = $9,
    updated_at = $10, quarantined = $11,
    quarantine_reason = COALESCE($12, quarantine_reason),
    quarantined_by = COALESCE($13, quarantined_by),
    ledger_seq = $14, version = version + 1, change_seq = $15
WHERE subject_id = $1
RETURNING version
"""


def describe_dsn(dsn: str) -> str:
    """``postgresql://host/db`` for messages: no user, password or parameters."""
    rest = dsn.split("://", 1)[-1]
    netloc, _, path = rest.partition("/")
    host = netloc.rpartition("@")[2] or "localhost"
    return f"postgresql://{host}/{path.split('?', 1)[0]}"


def channel_name(schema: str) -> str:
    """The NOTIFY channel of the trust store in ``schema`` (channels are per database, so
    two schemas of one database must not hear each other)."""
    return f"grace_trust_{hashlib.sha256(schema.encode()).hexdigest()[:16]}"


async def migrate(conn: Any, location: str) -> str:
    """Create or upgrade the trust tables; return the current schema's name.

    ``conn`` is an asyncpg connection. Refuses a schema whose ``trust_meta`` is not Grace's
    trust format or records a newer version than this Grace knows.
    """
    return await _pgschema.migrate(
        conn,
        location,
        what="trust",
        meta_table="trust_meta",
        fmt=FORMAT,
        migrations=MIGRATIONS,
        lock_id=_MIGRATE_LOCK,
        error=TrustError,
    )


def _state_from_record(row: Any, location: str) -> SubjectState:
    """Rebuild a subject from its row; a damaged row is a :class:`TrustError` (fail closed)."""
    subject_id = row[0]
    try:
        counts = [float(v) for v in row[1:9]]
        if not all(math.isfinite(v) and v >= 0 for v in counts):
            raise ValueError(f"evidence counts must be finite and >= 0, got {counts}")
        tallies = {
            d: Tally(successes=counts[2 * i], failures=counts[2 * i + 1])
            for i, d in enumerate(_DIMENSIONS)
        }
        return SubjectState(
            subject_id=subject_id,
            updated_at=row[9].astimezone(_dt.UTC),
            tallies=tallies,
            quarantined=bool(row[10]),
        )
    except (TypeError, ValueError, AttributeError) as e:
        raise TrustError(f"{location}: the record of subject {subject_id!r} is damaged: {e}") from e


class PostgresTrustBackend:
    """Subjects in PostgreSQL, read from a snapshot; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        *,
        audit_timeout_s: float,
        max_stale_s: float,
        heartbeat_s: float,
        monotonic: Callable[[], float],
    ) -> None:
        if not 0 < heartbeat_s < max_stale_s:
            raise TrustError(
                f"trust heartbeat_s ({heartbeat_s}) must be > 0 and below max_stale_s "
                f"({max_stale_s})"
            )
        self._dsn = dsn
        self.location = describe_dsn(dsn)
        self._audit_timeout_s = audit_timeout_s
        self._max_stale_s = max_stale_s
        self._heartbeat_s = heartbeat_s
        self._monotonic = monotonic
        self._states: dict[str, SubjectState] = {}
        self._versions: dict[str, int] = {}
        self._watermark = 0
        """Every change numbered up to this is in the snapshot."""
        self._fresh_at = monotonic()
        self._stale_logged = False
        self._pool: Any = None
        self._listener: Any = None
        self._channel = ""
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_again = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[TrustScore]] = set()

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        audit_timeout_s: float,
        max_stale_s: float = 15.0,
        heartbeat_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> PostgresTrustBackend:
        """Connect, migrate, LISTEN, load every subject and start the heartbeat."""
        backend = cls(
            dsn,
            audit_timeout_s=audit_timeout_s,
            max_stale_s=max_stale_s,
            heartbeat_s=heartbeat_s,
            monotonic=monotonic,
        )
        try:
            backend._pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=4,
                timeout=_CONNECT_TIMEOUT_S,
                server_settings={"application_name": "grace-trust"},
            )
            async with backend._pool.acquire() as conn:
                schema = await migrate(conn, backend.location)
            backend._channel = channel_name(schema)
            await backend._listen()
            await backend._reload()
        except BaseException as e:
            if backend._listener is not None:
                backend._listener.terminate()
            if backend._pool is not None:
                backend._pool.terminate()
            if isinstance(e, _DB_ERRORS):
                raise TrustError(f"cannot open the trust store {backend.location}: {e!r}") from e
            raise
        backend._heartbeat = asyncio.get_running_loop().create_task(backend._beat())
        log.debug("trust_store_opened", location=backend.location, subjects=len(backend._states))
        return backend

    # -- the snapshot ----------------------------------------------------------------------

    @property
    def states(self) -> Mapping[str, SubjectState]:
        return self._states

    def stale(self) -> bool:
        if self._monotonic() - self._fresh_at <= self._max_stale_s:
            return False
        if not self._stale_logged:
            log.warning(
                "trust_snapshot_stale",
                location=self.location,
                max_stale_s=self._max_stale_s,
                effect="every trust score reads 0.0 until a refresh succeeds",
            )
            self._stale_logged = True
        return True

    def _apply(self, subject_id: str, version: int, state: SubjectState) -> None:
        if version > self._versions.get(subject_id, 0):
            self._versions[subject_id] = version
            self._states[subject_id] = state

    def _mark_fresh(self, started: float) -> None:
        self._fresh_at = max(self._fresh_at, started)
        if self._stale_logged:
            log.info("trust_snapshot_fresh_again", location=self.location)
            self._stale_logged = False

    async def _reload(self) -> None:
        """Fetch every row changed after the watermark (all of them on the first call)."""
        started = self._monotonic()
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            changes = await conn.fetchval("SELECT n FROM trust_counter WHERE name = 'changes'")
            rows = await conn.fetch(
                f"{_SELECT} WHERE change_seq > $1 AND version > 0",
                self._watermark,
            )
        for row in rows:
            self._apply(row[0], int(row[12]), _state_from_record(row, self.location))
        self._watermark = max(self._watermark, int(changes))
        self._mark_fresh(started)

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=_CONNECT_TIMEOUT_S,
            server_settings={"application_name": "grace-trust-listen"},
        )
        try:
            await conn.add_listener(self._channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._listener = conn

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.isdigit() and int(payload) <= self._watermark:
            return  # already loaded (our own change, or a reload got there first)
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True  # coalesce a burst of notifications into one more load
            return
        self._reload_task = asyncio.get_running_loop().create_task(self._reload_quietly())

    async def _reload_quietly(self) -> None:
        while True:
            self._reload_again = False
            try:
                await self._reload()
            except (*_DB_ERRORS, TrustError) as e:
                log.warning("trust_reload_failed", location=self.location, error=repr(e))
                return  # the heartbeat retries
            if not self._reload_again:
                return

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            started = self._monotonic()
            try:
                if self._listener is None or self._listener.is_closed():
                    if self._listener is not None:
                        self._listener.terminate()
                        self._listener = None
                    await self._listen()
                    log.info("trust_listener_reconnected", location=self.location)
                    await self._reload()  # notifications sent while it was down are lost
                    continue
                changes = await self._listener.fetchval(
                    "SELECT n FROM trust_counter WHERE name = 'changes'"
                )
                if int(changes) != self._watermark:
                    await self._reload()
                else:
                    self._mark_fresh(started)
            except (*_DB_ERRORS, TrustError) as e:
                if self._listener is not None:
                    self._listener.terminate()
                    self._listener = None
                log.debug("trust_heartbeat_failed", location=self.location, error=repr(e))

    # -- changes ---------------------------------------------------------------------------

    async def change(
        self, subject_id: str, mutate: Mutation, now: _dt.datetime, audit: AuditSink | None
    ) -> TrustScore:
        """Run one change in its own task, so a cancelled caller never cuts it in half."""
        task = asyncio.get_running_loop().create_task(
            self._transact(subject_id, mutate, now, audit)
        )
        self._inflight.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[TrustScore]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller may have gone; it is raised to it if not

    async def _transact(
        self, subject_id: str, mutate: Mutation, now: _dt.datetime, audit: AuditSink | None
    ) -> TrustScore:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_PLACEHOLDER, subject_id, now)
                row = await conn.fetchrow(
                    f"{_SELECT} WHERE subject_id = $1 FOR UPDATE",
                    subject_id,
                )
                current = None if row[12] == 0 else _state_from_record(row, self.location)
                change = mutate(current, now)
                seq = None if audit is None else await self._append(audit, change, row[11])
                # Last, so the counter row (every change's) is locked only until the commit.
                number = await conn.fetchval(
                    "UPDATE trust_counter SET n = n + 1 WHERE name = 'changes' RETURNING n"
                )
                version = await conn.fetchval(_UPDATE, subject_id, *_values(change), seq, number)
                await conn.execute("SELECT pg_notify($1, $2)", self._channel, str(number))
        except _DB_ERRORS as e:
            raise TrustError(f"cannot store the change to {subject_id!r}: {e!r}") from e
        self._apply(subject_id, int(version), change.state)
        return change.score

    async def _append(self, audit: AuditSink, change: Change, previous_seq: int | None) -> int:
        """Append the ledger entry inside the transaction; its seq, or TrustError."""
        what = f"{change.action} of {change.state.subject_id!r}"
        try:
            async with asyncio.timeout(self._audit_timeout_s):
                receipt = await append_change(audit, change, previous_seq)
        except TimeoutError as e:
            raise TrustError(
                f"the ledger did not confirm {what} within {self._audit_timeout_s}s; "
                "nothing changed"
            ) from e
        except Exception as e:  # any failure to record is a refusal to change
            raise TrustError(f"recording {what} in the ledger failed ({e}); nothing changed") from e
        return int(receipt.seq)

    async def close(self) -> None:
        """Wait for the changes in flight, stop the heartbeat, close the connections."""
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        for task in (self._heartbeat, self._reload_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._listener is not None:
            self._listener.terminate()
            self._listener = None
        try:
            await self._pool.close()
        except _DB_ERRORS as e:
            log.warning("trust_close_failed", location=self.location, error=repr(e))


def _values(change: Change) -> tuple[Any, ...]:
    """``$2..$13`` of :data:`_UPDATE`: counts, time, quarantine and its note."""
    state = change.state
    counts: list[float] = []
    for d in _DIMENSIONS:
        tally = state.tallies[d]
        counts += [tally.successes, tally.failures]
    reason, by = change.quarantine_note or (None, None)
    return (*counts, state.updated_at, state.quarantined, reason, by)
