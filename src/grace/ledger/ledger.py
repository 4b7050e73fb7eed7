"""The ledger: durable, gapless, hash-chained and Merkle-proven audit log.

Invariants (the append state machine):

* seq = previous seq + 1, starting at 1; ``prev_hash`` = previous ``entry_hash``
  (64 zeros for the first entry); ``entry_hash`` = RFC 6962 leaf hash of the entry's
  canonical bytes, so the chain link and the Merkle leaf are one hash.
* Only the writer task assigns seq, prev_hash and timestamp. Callers' appends queue up
  while a commit is in flight and are committed together (group commit); a caller gets its
  :class:`Receipt` only after that transaction committed durably (SQLite
  ``synchronous=FULL`` by default; PostgreSQL with ``synchronous_commit=on``).
* In-memory state (tree edge, last hash) advances only after a commit succeeds, so a failed
  write leaves the ledger exactly as it was and fails every caller in that batch.
* SQLite: one process writes (``ledger.lock``, an exclusive ``flock``); others open
  read-only. PostgreSQL: any number of processes write; each batch is sequenced under one
  advisory lock against the head stored in the database (``_postgres``, ADR 0010).
"""

from __future__ import annotations

import asyncio
import binascii
import datetime as _dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import structlog

from grace.errors import LedgerError
from grace.ledger import merkle
from grace.ledger._backend import (
    Append,
    CheckpointRequest,
    Item,
    Row,
    Sequenced,
    StoreReader,
    StoreWriter,
    WriterState,
)
from grace.ledger._codec import encode_template, format_timestamp, parse_timestamp, splice
from grace.ledger._sqlite import KEY_FILE as KEY_FILE
from grace.ledger._sqlite import open_sqlite
from grace.ledger.bundle import ProofBundle
from grace.ledger.checkpoint import Checkpoint, NoteVerifier
from grace.ledger.entry import Entry, EntryPage, Receipt, VerifyReport
from grace.types import Clock, SystemClock

if TYPE_CHECKING:
    from grace.ledger._verify import Progress

__all__ = ["Ledger", "LedgerConfig"]

log = structlog.get_logger(__name__)

_QUERY_FIELDS: Final = ("subsystem", "actor", "action")
_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
_MAX_SEQ: Final = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerConfig:
    """How a ledger stores and signs. Built from ``GraceSettings.ledger`` at boot."""

    origin: str = "grace.local/ledger"
    """Name of this log in checkpoints (the signed note's origin line and key name)."""
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "FULL"
    """SQLite's durability level (PostgreSQL's writer always commits with
    ``synchronous_commit=on``)."""
    max_payload_bytes: int = 1 << 20
    checkpoint_every: int = 1000
    """Sign a checkpoint once this many entries were appended since the last one (0: never)."""
    checkpoint_interval_s: float = 60.0
    """Sign a checkpoint this often while there are new entries (0: never)."""
    max_batch: int = 1024
    reconnect_timeout_s: float = 30.0
    """PostgreSQL: how long the writer retries a batch whose connection failed before it
    fails the batch's callers (the retry never duplicates: ADR 0010)."""

    def __post_init__(self) -> None:
        if not self.origin or any(c.isspace() or c == "+" for c in self.origin):
            raise ValueError(
                f"ledger origin {self.origin!r} must be non-empty, without spaces or '+'"
            )
        if self.synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(
                f"ledger synchronous must be NORMAL, FULL or EXTRA, not {self.synchronous!r}"
            )
        if self.max_payload_bytes < 2:
            raise ValueError("ledger max_payload_bytes must be at least 2")
        if self.checkpoint_every < 0 or self.checkpoint_interval_s < 0:
            raise ValueError("ledger checkpoint_every and checkpoint_interval_s must be >= 0")
        if self.max_batch < 1:
            raise ValueError("ledger max_batch must be at least 1")
        if not self.reconnect_timeout_s > 0:
            raise ValueError("ledger reconnect_timeout_s must be > 0")


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class Ledger:
    """An append-only, verifiable audit log stored in SQLite or PostgreSQL.

    Open with :meth:`open` (SQLite under a data directory), :meth:`open_postgres` or
    :meth:`open_url`; use as an async context manager or call :meth:`close`. The API, the
    stored bytes, proofs and checkpoints are the same for both stores.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        config: LedgerConfig,
        clock: Clock,
        origin: str,
        reader: StoreReader,
        verifier: NoteVerifier,
        writer: StoreWriter | None = None,
        state: WriterState | None = None,
    ) -> None:
        self.data_dir = data_dir
        """Where this handle's local files live (SQLite: all of them; PostgreSQL: the key)."""
        self.config = config
        self.origin = origin
        self.verifier = verifier
        self._clock = clock
        self._reader = reader
        self._writer = writer
        self._state = state if writer is not None else None
        self._pending: list[Item] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._closed = False
        self._failure: BaseException | None = None
        self._writer_task: asyncio.Task[None] | None = None
        if writer is not None and state is not None:
            self._writer_task = asyncio.get_running_loop().create_task(
                self._run_writer(writer, state), name=f"grace-ledger-writer:{reader.location}"
            )

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        config: LedgerConfig | None = None,
        clock: Clock | None = None,
        read_only: bool = False,
        public_key: str | None = None,
    ) -> Ledger:
        """Open the SQLite ledger in ``data_dir``, creating directory, database and key if missing.

        ``read_only`` opens without the write lock (for inspection while a server runs);
        ``public_key`` (a vkey or PEM text) checks checkpoints against an externally kept key
        instead of the one derived from the key file.
        """
        config = config or LedgerConfig()
        path = Path(data_dir)
        opened = await asyncio.to_thread(
            open_sqlite,
            path,
            origin_wanted=config.origin,
            synchronous=config.synchronous,
            read_only=read_only,
            public_key=public_key,
        )
        return cls(
            data_dir=path,
            config=config,
            clock=clock or SystemClock(),
            origin=opened.origin,
            reader=opened.reader,
            verifier=opened.verifier,
            writer=opened.writer,
            state=opened.state,
        )

    @classmethod
    async def open_postgres(
        cls,
        dsn: str,
        *,
        key_file: str | os.PathLike[str],
        config: LedgerConfig | None = None,
        clock: Clock | None = None,
        read_only: bool = False,
        public_key: str | None = None,
    ) -> Ledger:
        """Open (and, writable, create or migrate) the ledger in a PostgreSQL database.

        Every instance writing to one database signs checkpoints with the Ed25519 key in
        ``key_file`` (created, mode 0600, only for a database without a ledger yet); an open
        is refused when the database's ledger was created with another key or origin.
        Tables live in the connection's current schema (``?search_path=…`` in the DSN).
        """
        from grace.ledger._postgres import open_postgres  # asyncpg only when needed

        config = config or LedgerConfig()
        key_path = Path(key_file)
        opened = await open_postgres(
            dsn,
            key_file=key_path,
            origin=config.origin,
            reconnect_timeout_s=config.reconnect_timeout_s,
            read_only=read_only,
            public_key=public_key,
        )
        return cls(
            data_dir=key_path.parent,
            config=config,
            clock=clock or SystemClock(),
            origin=opened.origin,
            reader=opened.reader,
            verifier=opened.verifier,
            writer=opened.writer,
            state=opened.state,
        )

    @classmethod
    async def open_url(
        cls,
        url: str,
        *,
        key_file: str | os.PathLike[str] | None = None,
        config: LedgerConfig | None = None,
        clock: Clock | None = None,
        read_only: bool = False,
        public_key: str | None = None,
    ) -> Ledger:
        """Open ``sqlite:PATH`` (a data directory) or ``postgresql://…`` (then ``key_file``)."""
        if url.startswith(_POSTGRES_SCHEMES):
            if key_file is None:
                raise LedgerError("a PostgreSQL ledger needs key_file: the shared signing key")
            return await cls.open_postgres(
                url,
                key_file=key_file,
                config=config,
                clock=clock,
                read_only=read_only,
                public_key=public_key,
            )
        if url.startswith("sqlite:"):
            path = Path(url.removeprefix("sqlite:").removeprefix("//"))
            if path.name == "ledger.db":
                path = path.parent
            if key_file is not None and Path(key_file) != path / KEY_FILE:
                raise LedgerError(f"a SQLite ledger keeps its key in {path / KEY_FILE}")
            return await cls.open(
                path, config=config, clock=clock, read_only=read_only, public_key=public_key
            )
        raise LedgerError(
            f"ledger URL {url.split(':', 1)[0]!r}… is neither sqlite:PATH nor postgresql://…"
        )

    @property
    def location(self) -> str:
        """``sqlite:<data dir>`` or ``postgresql://host:port/db`` (never with a password)."""
        return self._reader.location

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        """Which store holds this ledger."""
        return "postgresql" if self.location.startswith("postgresql") else "sqlite"

    async def close(self) -> None:
        """Commit what is queued, stop the writer, close the store and release locks."""
        if self._closed:
            return
        self._closing = True
        self._wakeup.set()
        task = self._writer_task
        if task is not None:
            await asyncio.wait([task])  # drains the queue; our own cancellation propagates
            if not task.cancelled() and task.exception() is not None:
                log.error("ledger_writer_failed", error=repr(task.exception()))
        self._closed = True
        try:
            await self._reader.close()
        finally:
            if self._writer is not None:
                await self._writer.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def read_only(self) -> bool:
        """True when this handle cannot append."""
        return self._state is None

    # -- appending -----------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._state is None:
            raise LedgerError(f"the ledger in {self._where()} was opened read-only")
        if self._closing:
            raise LedgerError("the ledger is closed")
        if self._failure is not None:
            raise LedgerError(f"the ledger writer stopped: {self._failure}") from self._failure

    def _where(self) -> str:
        location = self._reader.location
        return str(self.data_dir) if location.startswith("sqlite:") else location

    async def append(
        self,
        *,
        subsystem: str,
        actor: str,
        action: str,
        resource: str = "",
        result: str = "",
        payload: dict[str, Any] | None = None,
    ) -> Receipt:
        """Append an entry; return its receipt once it is durable.

        Raises :class:`EntryRejected` (nothing written) for a payload that is not a JSON
        object, holds NaN/Infinity or non-JSON values, or exceeds the size limit.
        """
        self._check_writable()
        template = encode_template(
            subsystem=subsystem,
            actor=actor,
            action=action,
            resource=resource,
            result=result,
            payload={} if payload is None else payload,
            max_payload_bytes=self.config.max_payload_bytes,
        )
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._pending.append(Append(template, future, (subsystem, actor, action)))
        self._wakeup.set()
        return await future

    async def checkpoint(self) -> Checkpoint:
        """Sign and store a checkpoint of everything appended so far (or return the current one)."""
        self._check_writable()
        future: asyncio.Future[Checkpoint] = asyncio.get_running_loop().create_future()
        self._pending.append(CheckpointRequest(future))
        self._wakeup.set()
        return await future

    def _seconds_to_timed_checkpoint(self) -> float | None:
        interval = self.config.checkpoint_interval_s
        return interval if interval > 0 else None

    async def _run_writer(self, writer: StoreWriter, state: WriterState) -> None:
        batch: list[Item] = []
        try:
            while True:
                if not self._pending:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    try:
                        async with asyncio.timeout(self._seconds_to_timed_checkpoint()):
                            await self._wakeup.wait()
                    except TimeoutError:
                        if state.tree.size > state.last_checkpoint.tree_size:
                            self._pending.append(CheckpointRequest(None))
                    continue
                batch = self._pending[: self.config.max_batch]
                del self._pending[: self.config.max_batch]
                try:
                    work = await writer.commit(state, batch, self._sequence_now)
                except LedgerError as e:  # nothing of the batch was written; keep going
                    log.error("ledger_write_failed", error=str(e), batch=len(batch))  # noqa: TRY400
                    self._fail(batch, e)
                    batch = []
                    continue
                state.advance(work)
                self._resolve(batch, work.receipts, work.checkpoint)
                batch = []
        except BaseException as e:
            self._failure = e
            error = LedgerError(
                f"the ledger writer stopped ({e!r}); entries not acknowledged may or may not "
                "have been committed"
            )
            self._fail(batch, error)
            self._fail(self._pending, error)
            self._pending.clear()
            raise

    def _sequence_now(self, state: WriterState, batch: list[Item]) -> Sequenced:
        # Looked up per batch so that tests can replace ``_sequence`` on an instance.
        return self._sequence(state, batch, self._clock.now())

    @staticmethod
    def _resolve(
        batch: list[Item],
        receipts: list[Receipt],
        checkpoint: Checkpoint | None,
    ) -> None:
        receipt_iter = iter(receipts)
        for item in batch:
            if isinstance(item, Append):
                receipt = next(receipt_iter)
                if not item.future.done():
                    item.future.set_result(receipt)
            elif item.future is not None and not item.future.done():
                if checkpoint is None:  # pragma: no cover - a request always signs
                    item.future.set_exception(LedgerError("no checkpoint was signed"))
                else:
                    item.future.set_result(checkpoint)

    @staticmethod
    def _fail(items: list[Item], error: BaseException) -> None:
        for item in items:
            if item.future is not None and not item.future.done():
                item.future.set_exception(error)

    def _sequence(self, state: WriterState, batch: list[Item], now: _dt.datetime) -> Sequenced:
        """Assign seq, prev_hash and timestamp, hash, extend the tree, sign if due.

        Pure CPU work on the event loop; ``state`` is not touched until the commit succeeds.
        """
        ts_text = max(format_timestamp(now), state.last_ts)
        ts = ts_text.encode()
        when = parse_timestamp(ts_text)
        tree = state.tree.copy()
        rows: list[Row] = []
        receipts: list[Receipt] = []
        prev_hex = state.last_hash_hex
        sha256 = hashlib.sha256
        hexlify = binascii.hexlify
        want_checkpoint = False
        for item in batch:
            if isinstance(item, CheckpointRequest):
                want_checkpoint = True
                continue
            seq = tree.size + 1
            raw = splice(item.template, prev_hex, seq, ts)
            h = sha256(b"\x00" + raw).digest()
            rows.append((seq, raw, h, tree.append(h)))
            prev_hex = hexlify(h)
            receipts.append(Receipt(seq=seq, entry_hash=prev_hex.decode(), timestamp=when))
        size = tree.size
        every = self.config.checkpoint_every
        if every and size - state.last_checkpoint.tree_size >= every:
            want_checkpoint = True
        checkpoint = state.last_checkpoint
        cp_row: tuple[int, str, str] | None = None
        if want_checkpoint and (size != checkpoint.tree_size or not checkpoint.note):
            checkpoint = state.signer.sign_checkpoint(size, tree.root())
            cp_row = (size, ts_text, checkpoint.note)
        return Sequenced(
            rows=rows,
            receipts=receipts,
            checkpoint=checkpoint if want_checkpoint else None,
            checkpoint_row=cp_row,
            tree=tree,
            last_hash_hex=prev_hex,
            last_ts=ts_text,
        )

    # -- reading -------------------------------------------------------------------------

    def _store(self) -> StoreReader:
        """The reader, unless this handle is closed."""
        if self._closed:
            raise LedgerError("the ledger is closed")
        return self._reader

    async def size(self) -> int:
        """Number of committed entries (= the highest seq)."""
        if self._state is not None and self._writer is not None and self._writer.exclusive:
            return self._state.tree.size
        return await self._store().size()

    async def get(self, seq: int) -> Entry | None:
        """The stored entry with this seq, or None."""
        found = await self._store().get(seq)
        return None if found is None else Entry.from_canonical(*found)

    async def get_canonical(self, seq: int) -> bytes | None:
        """The exact canonical bytes of an entry (what its hash covers), or None."""
        found = await self._store().get(seq)
        return None if found is None else found[0]

    async def query(
        self,
        *,
        after: int | None = None,
        seq_from: int | None = None,
        seq_to: int | None = None,
        subsystem: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: _dt.datetime | None = None,
        until: _dt.datetime | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> EntryPage:
        """Entries matching every given filter, at most ``limit`` per page, ordered by seq.

        ``seq_from``/``seq_to`` are inclusive, ``since``/``until`` aware datetimes (``until``
        exclusive). ``after`` is the cursor: pass the previous page's ``next_after`` (entries
        after it, or before it when ``newest_first``).
        """
        if type(limit) is not int or not 1 <= limit <= 10_000:
            raise LedgerError(f"query limit must be between 1 and 10000, got {limit!r}")
        filters = {
            k: v
            for k, v in zip(_QUERY_FIELDS, (subsystem, actor, action), strict=True)
            if v is not None
        }
        if not all(_encodable(v) for v in filters.values()):
            return EntryPage(entries=(), next_after=None)  # no stored field holds a lone surrogate
        lo = 0 if seq_from is None else seq_from - 1
        hi = seq_to
        if after is not None:
            if newest_first:
                hi = after - 1 if hi is None else min(hi, after - 1)
            else:
                lo = max(lo, after)
        # Both stores hold seqs as signed 64-bit integers: bounds beyond that match nothing.
        lo = min(max(lo, 0), _MAX_SEQ)
        if hi is not None:
            hi = min(max(hi, 0), _MAX_SEQ)
        try:
            since_text = None if since is None else format_timestamp(since)
            until_text = None if until is None else format_timestamp(until)
        except ValueError as e:
            raise LedgerError(f"query time bounds must be timezone-aware: {e}") from e
        rows = await self._store().query(
            lo=lo,
            hi=hi,
            filters=filters,
            since=since_text,
            until=until_text,
            limit=limit + 1,
            descending=newest_first,
        )
        more = len(rows) > limit
        entries = tuple(Entry.from_canonical(raw, h) for _, raw, h in rows[:limit])
        return EntryPage(entries=entries, next_after=entries[-1].seq if more else None)

    async def root(self, tree_size: int | None = None) -> bytes:
        """The Merkle root of the first ``tree_size`` entries (default: all)."""
        size = await self._tree_size(tree_size)
        if size == 0:
            return merkle.EMPTY_ROOT
        parts = merkle.perfect_parts(0, size)
        found = await self._store().part_hashes(parts)
        return merkle.fold_parts([found[p] for p in parts])

    async def _tree_size(self, tree_size: int | None) -> int:
        current = await self.size()
        if tree_size is None:
            return current
        if type(tree_size) is not int or not 0 <= tree_size <= current:
            raise LedgerError(
                f"tree size {tree_size!r} is not between 0 and the log size {current}"
            )
        return tree_size

    async def _ranges_hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        per_range = [merkle.perfect_parts(a, b) for a, b in ranges]
        wanted = {p for parts in per_range for p in parts}
        found = await self._store().part_hashes(wanted)
        return [merkle.fold_parts([found[p] for p in parts]) for parts in per_range]

    async def prove_inclusion(self, seq: int, tree_size: int | None = None) -> list[bytes]:
        """RFC 6962 audit path for entry ``seq`` in the tree of ``tree_size`` entries."""
        size = await self._tree_size(tree_size)
        if type(seq) is not int or not 1 <= seq <= size:
            raise LedgerError(f"entry {seq!r} is not in a tree of size {size}")
        return await self._ranges_hashes(merkle.inclusion_ranges(seq - 1, size))

    async def prove_consistency(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 proof that the tree of ``old_size`` entries is a prefix of ``new_size``."""
        size = await self._tree_size(new_size)
        if type(old_size) is not int or not 0 <= old_size <= size:
            raise LedgerError(f"old size {old_size!r} is not between 0 and {size}")
        return await self._ranges_hashes(merkle.consistency_ranges(old_size, size))

    async def checkpoints(self, limit: int | None = None) -> list[Checkpoint]:
        """Stored checkpoints, newest first."""
        rows = await self._store().checkpoints(limit=limit)
        return [Checkpoint.from_note(note) for _, _, note in rows]

    async def latest_checkpoint(self) -> Checkpoint | None:
        """The newest stored checkpoint, if any."""
        found = await self.checkpoints(limit=1)
        return found[0] if found else None

    async def prove(self, seq: int, tree_size: int | None = None) -> ProofBundle:
        """An offline proof bundle for entry ``seq``, tied to a signed checkpoint.

        With no ``tree_size``, the proof is in the smallest checkpoint covering ``seq``
        (signing a new one if this handle can write and none does yet).
        """
        size = await self.size()
        if type(seq) is not int or not 1 <= seq <= size:
            raise LedgerError(f"entry {seq!r} does not exist (the log has {size} entries)")
        want = max(seq, tree_size) if tree_size is not None else seq
        if tree_size is not None:
            await self._tree_size(tree_size)
        row = await self._store().checkpoint_at_least(want)
        if row is None:
            if self.read_only:
                raise LedgerError(
                    f"no signed checkpoint covers entry {want} yet; run `grace audit checkpoint`"
                )
            checkpoint = await self.checkpoint()
        else:
            checkpoint = Checkpoint.from_note(row[2])
        proof_size = tree_size if tree_size is not None else checkpoint.tree_size
        raw = await self.get_canonical(seq)
        if raw is None:  # pragma: no cover - checked against size above
            raise LedgerError(f"entry {seq} vanished")
        inclusion = await self.prove_inclusion(seq, proof_size)
        consistency = (
            await self.prove_consistency(proof_size, checkpoint.tree_size)
            if proof_size != checkpoint.tree_size
            else []
        )
        return ProofBundle(
            seq=seq,
            tree_size=proof_size,
            entry=raw,
            inclusion_proof=tuple(inclusion),
            checkpoint=checkpoint,
            consistency_proof=tuple(consistency),
        )

    async def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Recompute and check every entry hash, chain link, Merkle node, root and checkpoint."""
        return await self._store().verify(self.verifier, self.origin, progress)

    async def _rows(self, lo: int, hi: int) -> list[Row]:
        """Stored rows with ``lo < seq <= hi`` exactly as stored (for copying a ledger)."""
        return await self._store().rows(lo, hi)
