"""The PostgreSQL backend: many writing processes, one gapless chain (ADR 0010).

Invariants:

* One sequencer at a time: every batch runs ``ledger_begin`` first, which takes the
  transaction-scoped advisory lock and reads the stored head. When another instance
  appended since this one last wrote, the writer reloads its chain head, its Merkle
  frontier (O(log n) stored subtree hashes) and the newest checkpoint before sequencing;
  so seq, ``prev_hash`` and the tree continue whatever was committed last, by anyone.
* A receipt is resolved only after COMMIT returned.
* A batch carries a random id, recorded in ``ledger_batches`` inside its transaction. When
  the connection fails and the COMMIT's outcome is unknown, the writer reconnects and
  retries the *same* batch; ``ledger_begin`` (which cannot run before the old transaction
  ended: it waits for the lock that transaction held) reports whether the id is stored,
  and if so the receipts are read back from the stored rows instead of appending again.
  No duplicate, no gap, and every acknowledged entry is stored.
* Any other database error rolls the transaction back: nothing of the batch was written.
"""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Final

import asyncpg
import orjson
import structlog

from grace.errors import LedgerError, LedgerFormatError
from grace.ledger._backend import (
    Append,
    CheckpointRequest,
    Item,
    Opened,
    Row,
    Sequenced,
    Sequencer,
    WriterState,
)
from grace.ledger._codec import GENESIS_HASH_HEX, parse_timestamp
from grace.ledger._pg_schema import check_read_only, migrate
from grace.ledger._tree import CompactRange, part_locations, pick_parts
from grace.ledger._verify import (
    CHUNK_BITS,
    ChunkChecker,
    Joiner,
    Progress,
    check_checkpoints,
    failed_report,
)
from grace.ledger.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    load_verifier,
)
from grace.ledger.entry import Receipt, VerifyReport
from grace.ledger.merkle import EMPTY_ROOT, Part

__all__ = ["PostgresReader", "PostgresWriter", "describe_dsn", "open_postgres"]

log = structlog.get_logger(__name__)

_CONNECT_TIMEOUT_S: Final = 10.0
_POOL_SIZE: Final = 4
_VERIFY_PAGE: Final = 8192
_FIRST_RETRY_S: Final = 0.05
_MAX_RETRY_S: Final = 1.0
_FILTER_COLUMNS: Final = ("subsystem", "actor", "action")

_TRANSIENT: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # terminated backend, shutdown, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization: nothing committed
    # asyncpg's protocol can be left mid-operation by a backend killed at the wrong moment
    # ("cannot switch to state …"); the connection is dropped and the batch retried.
    asyncpg.exceptions.InternalClientError,
)
"""Failures after which the outcome of a COMMIT is unknown or the server may come back."""

_INSERT_ENTRIES: Final = """
INSERT INTO ledger_entries (seq, entry, entry_hash, nodes, subsystem, actor, action, ts)
SELECT u.*, $8::text FROM unnest(
    $1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[]
) AS u
"""
_IMPORT_ENTRIES: Final = """
INSERT INTO ledger_entries (seq, entry, entry_hash, nodes, subsystem, actor, action, ts)
SELECT * FROM unnest(
    $1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[],
    $8::text[]
)
"""
_INSERT_CHECKPOINT: Final = (
    "INSERT INTO ledger_checkpoints (tree_size, created_at, note) VALUES ($1, $2, $3)"
)
_BEGIN: Final = "SELECT * FROM ledger_begin($1, $2, $3, $4, $5)"


def describe_dsn(dsn: str) -> str:
    """``postgresql://host:port/db`` for messages: no user, password or parameters."""
    rest = dsn.split("://", 1)[-1]
    netloc, _, path = rest.partition("/")
    host = netloc.rpartition("@")[2] or "localhost"
    return f"postgresql://{host}/{path.split('?', 1)[0]}"


async def _connect(dsn: str, role: str) -> Any:
    # A receipt promises durability: commit waits for the WAL flush whatever the server's
    # default (a DBA's synchronous_commit=off would otherwise lose acknowledged entries).
    return await asyncpg.connect(
        dsn,
        timeout=_CONNECT_TIMEOUT_S,
        server_settings={"application_name": f"grace-ledger-{role}", "synchronous_commit": "on"},
    )


async def _part_hashes(conn: Any, parts: Collection[Part], location: str) -> dict[Part, bytes]:
    where = part_locations(parts)
    seqs = sorted({seq for seq, _ in where.values()})
    found: dict[int, tuple[bytes, bytes]] = {}
    if seqs:
        rows = await conn.fetch(
            "SELECT seq, entry_hash, nodes FROM ledger_entries WHERE seq = ANY($1::bigint[])",
            seqs,
        )
        found = {r[0]: (r[1], r[2]) for r in rows}
    return pick_parts(where, found, location)


def _empty_checkpoint(origin: str) -> Checkpoint:
    return Checkpoint(origin=origin, tree_size=0, root_hash=EMPTY_ROOT, note="")


async def _begin(
    conn: Any, state: WriterState, batch_id: uuid.UUID | None, count: int, location: str
) -> Any:
    """Take the sequencer lock (inside a transaction) and make ``state`` the stored head.

    When another writer moved the head, ``ledger_begin`` sends the tree's edge and the
    newest checkpoint along: the state is then what that writer left, committed truth.
    """
    known = state.tree.size
    known_hash = binascii.unhexlify(state.last_hash_hex) if known else None
    head = await conn.fetchrow(
        _BEGIN, batch_id, count, known, known_hash, state.last_checkpoint.tree_size
    )
    size = int(head["head_size"])
    frontier = head["frontier"]
    if frontier is not None:
        if len(frontier) != size.bit_count() or any(
            type(h) is not bytes or len(h) != 32 for h in frontier
        ):
            raise LedgerFormatError(
                f"{location}: the Merkle data at the head (entry {size}) is missing or "
                "malformed; run `grace audit verify`"
            )
        state.tree = CompactRange(size, list(frontier))
        state.last_hash_hex = binascii.hexlify(head["head_hash"]) if size else GENESIS_HASH_HEX
        state.last_ts = max(state.last_ts, head["head_ts"] or "")
    cp_size = int(head["head_checkpoint"])
    if cp_size != state.last_checkpoint.tree_size:
        note = head["checkpoint_note"]
        state.last_checkpoint = (
            Checkpoint.from_note(note) if cp_size else _empty_checkpoint(state.signer.name)
        )
    return head


def _utf8(values: Sequence[str]) -> list[bytes]:
    return [v.encode() for v in values]


class PostgresReader:
    """Reads through a small connection pool; verify reads one REPEATABLE READ snapshot."""

    __slots__ = ("_location", "_pool")

    def __init__(self, pool: Any, location: str) -> None:
        self._pool = pool
        self._location = location

    @property
    def location(self) -> str:
        """``postgresql://host:port/db``."""
        return self._location

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        # One retry: the pool replaces a connection the server dropped (e.g. a restart).
        for attempt in (1, 2):
            try:
                async with self._pool.acquire() as conn:
                    return list(await conn.fetch(sql, *args))
            except _TRANSIENT as e:
                if attempt == 2:
                    raise LedgerError(
                        f"reading the ledger from {self._location} failed: {e}"
                    ) from e
            except asyncpg.PostgresError as e:
                raise LedgerError(f"reading the ledger from {self._location} failed: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def size(self) -> int:
        """Highest committed seq."""
        rows = await self._fetch("SELECT COALESCE(MAX(seq), 0) FROM ledger_entries")
        return int(rows[0][0])

    async def get(self, seq: int) -> tuple[bytes, bytes] | None:
        """Stored bytes and hash of one entry."""
        rows = await self._fetch("SELECT entry, entry_hash FROM ledger_entries WHERE seq = $1", seq)
        return (rows[0][0], rows[0][1]) if rows else None

    async def rows(self, lo: int, hi: int) -> list[Row]:
        """Stored rows with ``lo < seq <= hi``, in seq order."""
        found = await self._fetch(
            "SELECT seq, entry, entry_hash, nodes FROM ledger_entries "
            "WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            lo,
            hi,
        )
        return [(r[0], r[1], r[2], r[3]) for r in found]

    async def query(
        self,
        *,
        lo: int,
        hi: int | None,
        filters: dict[str, str],
        since: str | None,
        until: str | None,
        limit: int,
        descending: bool,
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries with ``lo < seq <= hi`` matching all filters, at most ``limit``."""
        where = ["seq > $1"]
        args: list[Any] = [lo]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if hi is not None:
            where.append(f"seq <= {arg(hi)}")
        for column, value in filters.items():
            if column not in _FILTER_COLUMNS:  # pragma: no cover - guarded by the Ledger API
                raise ValueError(column)
            where.append(f"{column} = {arg(value.encode())}")
        if since is not None:
            where.append(f"ts >= {arg(since)}")
        if until is not None:
            where.append(f"ts < {arg(until)}")
        order = "DESC" if descending else "ASC"
        sql = (
            "SELECT seq, entry, entry_hash FROM ledger_entries WHERE "  # noqa: S608 - fixed names
            + " AND ".join(where)
            + f" ORDER BY seq {order} LIMIT {arg(limit)}"
        )
        return [(r[0], r[1], r[2]) for r in await self._fetch(sql, *args)]

    async def part_hashes(self, parts: Collection[Part]) -> dict[Part, bytes]:
        """Hashes of perfect subtrees, in one query."""
        for attempt in (1, 2):
            try:
                async with self._pool.acquire() as conn:
                    return await _part_hashes(conn, parts, self._location)
            except _TRANSIENT as e:
                if attempt == 2:
                    raise LedgerError(
                        f"reading the ledger from {self._location} failed: {e}"
                    ) from e
            except asyncpg.PostgresError as e:
                raise LedgerError(f"reading the ledger from {self._location} failed: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def checkpoints(self, *, limit: int | None) -> list[tuple[int, str, str]]:
        """Stored checkpoints, newest first."""
        sql = "SELECT tree_size, created_at, note FROM ledger_checkpoints ORDER BY tree_size DESC"
        found = await (
            self._fetch(sql + " LIMIT $1", limit) if limit is not None else self._fetch(sql)
        )
        return [(r[0], r[1], r[2]) for r in found]

    async def checkpoint_at_least(self, size: int) -> tuple[int, str, str] | None:
        """The smallest stored checkpoint covering ``size`` entries."""
        found = await self._fetch(
            "SELECT tree_size, created_at, note FROM ledger_checkpoints WHERE tree_size >= $1 "
            "ORDER BY tree_size LIMIT 1",
            size,
        )
        return (found[0][0], found[0][1], found[0][2]) if found else None

    async def verify(
        self, verifier: NoteVerifier, origin: str, progress: Progress | None
    ) -> VerifyReport:
        """Stream every row of one snapshot through the same checks as SQLite's verify.

        Chunks and their joining are ``_verify``'s, so both stores report alike; rows also
        have their query columns checked against their bytes. Hashing runs in a thread,
        page by page, so the event loop keeps serving while a large log is checked.
        """
        try:
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await self._verify(conn, verifier, origin, progress)
        except (*_TRANSIENT, asyncpg.PostgresError) as e:
            raise LedgerError(f"verifying the ledger in {self._location} failed: {e}") from e

    async def _verify(
        self, conn: Any, verifier: NoteVerifier, origin: str, progress: Progress | None
    ) -> VerifyReport:
        bounds = await conn.fetchrow(
            "SELECT COALESCE(MIN(seq), 1), COALESCE(MAX(seq), 0) FROM ledger_entries"
        )
        low, total = int(bounds[0]), int(bounds[1])
        found = check_checkpoints(
            await conn.fetch("SELECT tree_size, note FROM ledger_checkpoints ORDER BY tree_size"),
            verifier,
            origin,
            total,
        )
        if isinstance(found, VerifyReport):
            return found
        if low < 1:
            return failed_report(0, total, 0, low, f"unexpected entry with seq {low}")
        joiner = Joiner(total, found, progress)
        chunk = 1 << CHUNK_BITS
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            inside = tuple(cp.tree_size for cp in found if lo < cp.tree_size <= hi)
            checker = ChunkChecker(lo, hi, inside, chunk, columns=True)
            cursor = await conn.cursor(
                "SELECT seq, entry, entry_hash, nodes, subsystem, actor, action, ts "
                "FROM ledger_entries WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                lo,
                hi,
            )
            while page := await cursor.fetch(_VERIFY_PAGE):
                if not await asyncio.to_thread(checker.feed, page):
                    break
            failed = joiner.add(checker.result())
            if failed is not None:
                return failed
        return joiner.finish()

    async def close(self) -> None:
        """Close the pool's connections."""
        try:
            await asyncio.wait_for(self._pool.close(), _CONNECT_TIMEOUT_S)
        except (*_TRANSIENT, asyncpg.PostgresError):
            self._pool.terminate()


class PostgresWriter:
    """Commits batches on one connection, sequenced by the database's advisory lock."""

    __slots__ = ("_conn", "_dsn", "_import_conn", "_location", "_reconnect_timeout_s")

    exclusive = False

    def __init__(self, dsn: str, location: str, conn: Any, reconnect_timeout_s: float) -> None:
        self._dsn = dsn
        self._location = location
        self._conn: Any = conn
        self._import_conn: Any = None
        self._reconnect_timeout_s = reconnect_timeout_s

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await _connect(self._dsn, "writer")
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def commit(self, state: WriterState, items: list[Item], sequence: Sequencer) -> Sequenced:
        """Sequence and commit under the lock; retry the same batch if the connection fails."""
        count = sum(1 for item in items if isinstance(item, Append))
        batch_id = uuid.uuid4() if count else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reconnect_timeout_s
        delay = _FIRST_RETRY_S
        attempt = 1
        while True:
            try:
                conn = await self._connection()
                return await self._attempt(conn, state, items, sequence, batch_id, count)
            except _TRANSIENT as e:
                self._drop()
                if loop.time() + delay > deadline:
                    raise LedgerError(
                        f"PostgreSQL at {self._location} could not be reached for "
                        f"{self._reconnect_timeout_s:g} s ({e!r}); {count} entries were not "
                        "acknowledged (a retry of them may find them stored)"
                    ) from e
                log.warning(
                    "ledger_postgres_retry",
                    location=self._location,
                    error=repr(e),
                    attempt=attempt,
                    entries=count,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_S)
                attempt += 1
            except asyncpg.PostgresError as e:
                raise LedgerError(
                    f"writing to {self._location} failed, nothing was appended: {e}"
                ) from e

    async def _attempt(
        self,
        conn: Any,
        state: WriterState,
        items: list[Item],
        sequence: Sequencer,
        batch_id: uuid.UUID | None,
        count: int,
    ) -> Sequenced:
        async with conn.transaction():
            head = await _begin(conn, state, batch_id, count, self._location)
            done = head["batch_first"]
            if done is not None:  # committed before the connection failed: read it back
                receipts = await self._stored_receipts(conn, int(done), count)
                rest: list[Item] = [i for i in items if isinstance(i, CheckpointRequest)]
                work = dataclasses.replace(sequence(state, rest), receipts=receipts)
                log.info("ledger_postgres_batch_recovered", first_seq=int(done), entries=count)
            else:
                work = sequence(state, items)
                if work.rows:
                    await self._insert(conn, work, items)
            if work.checkpoint_row is not None:
                await conn.execute(_INSERT_CHECKPOINT, *work.checkpoint_row)
        return work

    @staticmethod
    async def _insert(conn: Any, work: Sequenced, items: list[Item]) -> None:
        columns = [item.columns for item in items if isinstance(item, Append)]
        rows = work.rows
        await conn.execute(
            _INSERT_ENTRIES,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            _utf8([c[0] for c in columns]),
            _utf8([c[1] for c in columns]),
            _utf8([c[2] for c in columns]),
            work.last_ts,
        )

    async def _stored_receipts(self, conn: Any, first: int, count: int) -> list[Receipt]:
        rows = await conn.fetch(
            "SELECT seq, entry_hash, ts FROM ledger_entries WHERE seq >= $1 AND seq < $2 "
            "ORDER BY seq",
            first,
            first + count,
        )
        if len(rows) != count:
            raise LedgerFormatError(
                f"{self._location}: a committed batch of {count} entries from seq {first} has "
                f"{len(rows)} rows; run `grace audit verify`"
            )
        return [
            Receipt(seq=r[0], entry_hash=r[1].hex(), timestamp=parse_timestamp(r[2])) for r in rows
        ]

    async def import_rows(
        self,
        rows: Sequence[Row],
        checkpoints: Sequence[tuple[int, str, str]],
        *,
        after: int,
        after_hash: bytes | None,
    ) -> None:
        """Store rows copied from another ledger verbatim, continuing a head of ``after``.

        Under the sequencer lock, so no instance appends in between; refused (nothing
        written) when the stored head is not ``after`` with ``after_hash`` any more.
        """
        try:
            if self._import_conn is None or self._import_conn.is_closed():
                self._import_conn = await _connect(self._dsn, "migrate")
            conn = self._import_conn
            async with conn.transaction():
                head = await conn.fetchrow(_BEGIN, None, 0, after, after_hash, -1)
                if int(head["head_size"]) != after or (after and head["head_hash"] != after_hash):
                    raise LedgerError(
                        f"{self._location} changed during the copy (its head is entry "
                        f"{head['head_size']}, expected {after}): is a Grace instance writing "
                        "to it?"
                    )
                if rows:
                    await conn.execute(_IMPORT_ENTRIES, *_import_columns(rows))
                if checkpoints:
                    await conn.executemany(_INSERT_CHECKPOINT, checkpoints)
        except (*_TRANSIENT, asyncpg.PostgresError) as e:
            raise LedgerError(f"copying into {self._location} failed: {e}") from e

    async def close(self) -> None:
        """Close the writer's connections."""
        for conn in (self._conn, self._import_conn):
            if conn is None or conn.is_closed():
                continue
            try:
                await asyncio.wait_for(conn.close(), _CONNECT_TIMEOUT_S)
            except (*_TRANSIENT, asyncpg.PostgresError):
                conn.terminate()
        self._conn = self._import_conn = None


def _import_columns(rows: Sequence[Row]) -> list[list[Any]]:
    """Columns for ``_IMPORT_ENTRIES``: the query fields come out of each entry's bytes."""
    out: list[list[Any]] = [[] for _ in range(8)]
    for seq, raw, entry_hash, nodes in rows:
        try:
            obj = orjson.loads(raw)
            fields = (obj["subsystem"], obj["actor"], obj["action"], obj["timestamp"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise LedgerFormatError(f"entry {seq} to copy is not a ledger entry: {e}") from e
        if not all(type(f) is str for f in fields):
            raise LedgerFormatError(f"entry {seq} to copy has non-text fields")
        values = (seq, raw, entry_hash, nodes, *_utf8(fields[:3]), fields[3])
        for column, value in zip(out, values, strict=True):
            column.append(value)
    return out


# -- opening -------------------------------------------------------------------------------


async def _initial_state(conn: Any, signer: NoteSigner, location: str) -> WriterState:
    """The stored head, edge and newest checkpoint (read under the sequencer lock)."""
    state = WriterState(
        signer, CompactRange(), GENESIS_HASH_HEX, "", _empty_checkpoint(signer.name)
    )
    async with conn.transaction():
        await _begin(conn, state, None, 0, location)
    return state


async def open_postgres(
    dsn: str,
    *,
    key_file: Path,
    origin: str,
    reconnect_timeout_s: float,
    read_only: bool,
    public_key: str | None,
) -> Opened:
    """Connect, check (and, writable, create or migrate) the schema, load the head."""
    location = describe_dsn(dsn)
    try:
        conn = await _connect(dsn, "reader" if read_only else "writer")
    except (*_TRANSIENT, asyncpg.PostgresError) as e:
        raise LedgerError(f"cannot connect to PostgreSQL at {location}: {e}") from e
    pool = None
    try:
        if await conn.fetchval("SELECT current_schema()") is None:
            raise LedgerError(
                f"{location}: no schema on the connection's search_path exists to hold the ledger"
            )
        if read_only:
            origin, verifier = await check_read_only(conn, location, key_file, public_key)
            await conn.close()
        else:
            origin, signer = await migrate(conn, location, key_file, origin)
            verifier = load_verifier(public_key, name=origin) if public_key else signer.verifier
            state = await _initial_state(conn, signer, location)
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=_POOL_SIZE,
            timeout=_CONNECT_TIMEOUT_S,
            server_settings={"application_name": "grace-ledger-reader"},
        )
    except BaseException as e:
        if pool is not None:
            pool.terminate()
        conn.terminate()
        if isinstance(e, (*_TRANSIENT, asyncpg.PostgresError)):
            raise LedgerError(f"opening the ledger in {location} failed: {e}") from e
        raise
    reader = PostgresReader(pool, location)
    if read_only:
        return Opened(origin=origin, reader=reader, verifier=verifier)
    writer = PostgresWriter(dsn, location, conn, reconnect_timeout_s)
    return Opened(origin=origin, reader=reader, verifier=verifier, writer=writer, state=state)
