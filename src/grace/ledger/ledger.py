"""The ledger: durable, gapless, hash-chained and Merkle-proven audit log.

Invariants (the append state machine):

* seq = previous seq + 1, starting at 1; ``prev_hash`` = previous ``entry_hash``
  (64 zeros for the first entry); ``entry_hash`` = RFC 6962 leaf hash of the entry's
  canonical bytes, so the chain link and the Merkle leaf are one hash.
* Only the writer task assigns seq, prev_hash and timestamp. Callers' appends queue up
  while a commit is in flight and are committed together (group commit); a caller gets its
  :class:`Receipt` only after that transaction committed with the configured
  ``synchronous`` level (``FULL`` by default).
* In-memory state (tree edge, last hash) advances only after a commit succeeds, so a failed
  write leaves the ledger exactly as it was and fails every caller in that batch.
* One process writes (``ledger.lock``, an exclusive ``flock``); others open read-only.
"""

from __future__ import annotations

import asyncio
import binascii
import datetime as _dt
import fcntl
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar

import structlog

from grace.errors import LedgerError, LedgerFormatError, LedgerLocked
from grace.ledger import merkle
from grace.ledger._codec import (
    GENESIS_HASH_HEX,
    EntryTemplate,
    encode_template,
    format_timestamp,
    parse_timestamp,
    splice,
)
from grace.ledger._store import SQLiteStore
from grace.ledger._tree import CompactRange
from grace.ledger._verify import Progress, verify_connection
from grace.ledger.bundle import ProofBundle
from grace.ledger.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    load_or_create_signing_key,
    load_verifier,
)
from grace.ledger.entry import Entry, EntryPage, Receipt, VerifyReport
from grace.types import Clock, SystemClock

__all__ = ["Ledger", "LedgerConfig"]

log = structlog.get_logger(__name__)

DB_FILE: Final = "ledger.db"
KEY_FILE: Final = "ledger.key"
LOCK_FILE: Final = "ledger.lock"

_T = TypeVar("_T")
_QUERY_FIELDS: Final = ("subsystem", "actor", "action")


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerConfig:
    """How a ledger stores and signs. Built from ``GraceSettings.ledger`` at boot."""

    origin: str = "grace.local/ledger"
    """Name of this log in checkpoints (the signed note's origin line and key name)."""
    synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "FULL"
    max_payload_bytes: int = 1 << 20
    checkpoint_every: int = 1000
    """Sign a checkpoint once this many entries were appended since the last one (0: never)."""
    checkpoint_interval_s: float = 60.0
    """Sign a checkpoint this often while there are new entries (0: never)."""
    max_batch: int = 1024

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


class _Append:
    __slots__ = ("future", "template")

    def __init__(self, template: EntryTemplate, future: asyncio.Future[Receipt]) -> None:
        self.template = template
        self.future = future


class _CheckpointRequest:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Checkpoint] | None) -> None:
        self.future = future


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sequenced:
    """A batch made ready to commit: rows, receipts and the state after it."""

    rows: list[tuple[int, bytes, bytes, bytes]]
    receipts: list[Receipt]
    checkpoint: Checkpoint | None
    """The checkpoint to hand to whoever asked for one (None when nobody did)."""
    checkpoint_row: tuple[int, str, str] | None
    """A newly signed checkpoint to store with the batch."""
    tree: CompactRange
    last_hash_hex: bytes
    last_ts: str


class _WriterState:
    """What only the writer touches: its store and key, the tree edge, the chain head."""

    __slots__ = ("last_checkpoint", "last_hash_hex", "last_ts", "signer", "store", "tree")

    def __init__(
        self,
        store: SQLiteStore,
        signer: NoteSigner,
        tree: CompactRange,
        last_hash_hex: bytes,
        last_ts: str,
        last_checkpoint: Checkpoint,
    ) -> None:
        self.store = store
        self.signer = signer
        self.tree = tree
        self.last_hash_hex = last_hash_hex
        self.last_ts = last_ts
        self.last_checkpoint = last_checkpoint

    def advance(self, work: _Sequenced) -> None:
        """Move to the state after a committed batch."""
        self.tree = work.tree
        self.last_hash_hex = work.last_hash_hex
        self.last_ts = work.last_ts
        if work.checkpoint_row is not None and work.checkpoint is not None:
            self.last_checkpoint = work.checkpoint
            log.debug("ledger_checkpoint", tree_size=work.checkpoint.tree_size)


def _take_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise LedgerLocked(
            f"the ledger in {path.parent} is open for writing by another process (pid {holder}); "
            "stop it, or open the ledger read-only"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class Ledger:
    """An append-only, verifiable audit log stored in SQLite under a data directory.

    Open with :meth:`open`; use as an async context manager or call :meth:`close`.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        config: LedgerConfig,
        clock: Clock,
        origin: str,
        reader: SQLiteStore,
        verifier: NoteVerifier,
        state: _WriterState | None = None,
        lock_fd: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self.origin = origin
        self.verifier = verifier
        self._clock = clock
        self._reader = reader
        self._state = state
        self._lock_fd = lock_fd
        self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="grace-ledger-read")
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="grace-ledger-write")
        self._pending: list[_Append | _CheckpointRequest] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._closed = False
        self._failure: BaseException | None = None
        self._writer_task: asyncio.Task[None] | None = None
        if state is not None:
            self._writer_task = asyncio.get_running_loop().create_task(
                self._run_writer(state), name=f"grace-ledger-writer:{data_dir}"
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
        """Open the ledger in ``data_dir``, creating directory, database and key if missing.

        ``read_only`` opens without the write lock (for inspection while a server runs);
        ``public_key`` (a vkey or PEM text) checks checkpoints against an externally kept key
        instead of the one derived from the key file.
        """
        config = config or LedgerConfig()
        clock = clock or SystemClock()
        path = Path(data_dir)
        parts = await asyncio.to_thread(cls._open_sync, path, config, read_only, public_key)
        return cls(data_dir=path, config=config, clock=clock, **parts)

    @classmethod
    def _open_sync(
        cls, path: Path, config: LedgerConfig, read_only: bool, public_key: str | None
    ) -> dict[str, Any]:
        """Open files and stores (blocking); the constructor then starts the writer."""
        if path.exists() and not path.is_dir():
            raise LedgerFormatError(f"data dir {path} is a file, not a directory")
        if read_only:
            reader, origin = SQLiteStore.open(
                path / DB_FILE,
                read_only=True,
                create=False,
                synchronous=config.synchronous,
                origin=None,
            )
            try:
                verifier = cls._verifier(path, origin, public_key)
            except BaseException:
                reader.close()
                raise
            return {"origin": origin, "reader": reader, "verifier": verifier}
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise LedgerError(f"cannot create data dir {path}: {e.strerror}") from e
        lock_fd = _take_lock(path / LOCK_FILE)
        stores: list[SQLiteStore] = []
        try:
            writer, origin = SQLiteStore.open(
                path / DB_FILE,
                read_only=False,
                create=True,
                synchronous=config.synchronous,
                origin=config.origin,
            )
            stores.append(writer)
            if origin != config.origin:
                raise LedgerFormatError(
                    f"the ledger in {path} is the log {origin!r}; settings name {config.origin!r}"
                )
            reader, _ = SQLiteStore.open(
                path / DB_FILE,
                read_only=True,
                create=False,
                synchronous=config.synchronous,
                origin=None,
            )
            stores.append(reader)
            signer = load_or_create_signing_key(path / KEY_FILE, origin)
            verifier = load_verifier(public_key, name=origin) if public_key else signer.verifier
            tree, last_hash = writer.load_tree()
            latest = writer.checkpoints(limit=1)
            last_cp = (
                Checkpoint.from_note(latest[0][2])
                if latest
                else Checkpoint(origin=origin, tree_size=0, root_hash=merkle.EMPTY_ROOT, note="")
            )
            last_ts = ""
            if tree.size:
                raw = writer.get(tree.size)
                if raw is not None:
                    last_ts = format_timestamp(Entry.from_canonical(*raw).timestamp)
            state = _WriterState(
                writer,
                signer,
                tree,
                binascii.hexlify(last_hash) if last_hash else GENESIS_HASH_HEX,
                last_ts,
                last_cp,
            )
        except BaseException:
            for store in stores:
                store.close()
            os.close(lock_fd)
            raise
        return {
            "origin": origin,
            "reader": reader,
            "verifier": verifier,
            "state": state,
            "lock_fd": lock_fd,
        }

    @staticmethod
    def _verifier(path: Path, origin: str, public_key: str | None) -> NoteVerifier:
        if public_key:
            return load_verifier(public_key, name=origin)
        key_path = path / KEY_FILE
        if not key_path.exists():
            raise LedgerError(f"no signing key {key_path}; pass the ledger's public key")
        return load_or_create_signing_key(key_path, origin).verifier

    async def close(self) -> None:
        """Commit what is queued, stop the writer, close the database and release the lock."""
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
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._read_pool, self._reader.close)
        if self._state is not None:
            await loop.run_in_executor(self._write_pool, self._state.store.close)
        self._read_pool.shutdown(wait=True)
        self._write_pool.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

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
            raise LedgerError(f"the ledger in {self.data_dir} was opened read-only")
        if self._closing:
            raise LedgerError("the ledger is closed")
        if self._failure is not None:
            raise LedgerError(f"the ledger writer stopped: {self._failure}") from self._failure

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
        self._pending.append(_Append(template, future))
        self._wakeup.set()
        return await future

    async def checkpoint(self) -> Checkpoint:
        """Sign and store a checkpoint of everything appended so far (or return the current one)."""
        self._check_writable()
        future: asyncio.Future[Checkpoint] = asyncio.get_running_loop().create_future()
        self._pending.append(_CheckpointRequest(future))
        self._wakeup.set()
        return await future

    def _seconds_to_timed_checkpoint(self) -> float | None:
        interval = self.config.checkpoint_interval_s
        return interval if interval > 0 else None

    async def _run_writer(self, state: _WriterState) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Append | _CheckpointRequest] = []
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
                            self._pending.append(_CheckpointRequest(None))
                    continue
                batch = self._pending[: self.config.max_batch]
                del self._pending[: self.config.max_batch]
                work = self._sequence(state, batch, self._clock.now())
                try:
                    await loop.run_in_executor(self._write_pool, self._commit, state, work)
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

    @staticmethod
    def _resolve(
        batch: list[_Append | _CheckpointRequest],
        receipts: list[Receipt],
        checkpoint: Checkpoint | None,
    ) -> None:
        receipt_iter = iter(receipts)
        for item in batch:
            if isinstance(item, _Append):
                receipt = next(receipt_iter)
                if not item.future.done():
                    item.future.set_result(receipt)
            elif item.future is not None and not item.future.done():
                if checkpoint is None:  # pragma: no cover - a request always signs
                    item.future.set_exception(LedgerError("no checkpoint was signed"))
                else:
                    item.future.set_result(checkpoint)

    @staticmethod
    def _fail(items: list[_Append | _CheckpointRequest], error: BaseException) -> None:
        for item in items:
            if item.future is not None and not item.future.done():
                item.future.set_exception(error)

    def _sequence(
        self, state: _WriterState, batch: list[_Append | _CheckpointRequest], now: _dt.datetime
    ) -> _Sequenced:
        """Assign seq, prev_hash and timestamp, hash, extend the tree, sign if due.

        Pure CPU work on the event loop; ``state`` is not touched until the commit succeeds.
        """
        ts_text = max(format_timestamp(now), state.last_ts)
        ts = ts_text.encode()
        when = parse_timestamp(ts_text)
        tree = state.tree.copy()
        rows: list[tuple[int, bytes, bytes, bytes]] = []
        receipts: list[Receipt] = []
        prev_hex = state.last_hash_hex
        sha256 = hashlib.sha256
        hexlify = binascii.hexlify
        want_checkpoint = False
        for item in batch:
            if isinstance(item, _CheckpointRequest):
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
        return _Sequenced(
            rows=rows,
            receipts=receipts,
            checkpoint=checkpoint if want_checkpoint else None,
            checkpoint_row=cp_row,
            tree=tree,
            last_hash_hex=prev_hex,
            last_ts=ts_text,
        )

    def _commit(self, state: _WriterState, work: _Sequenced) -> None:
        """Write a sequenced batch (on the writer thread)."""
        state.store.commit(work.rows, work.checkpoint_row)

    # -- reading -------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise LedgerError("the ledger is closed")
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, fn, *args)

    async def size(self) -> int:
        """Number of committed entries (= the highest seq)."""
        if self._state is not None:
            return self._state.tree.size
        return await self._read(self._reader.size)

    async def get(self, seq: int) -> Entry | None:
        """The stored entry with this seq, or None."""
        found = await self._read(self._reader.get, seq)
        return None if found is None else Entry.from_canonical(*found)

    async def get_canonical(self, seq: int) -> bytes | None:
        """The exact canonical bytes of an entry (what its hash covers), or None."""
        found = await self._read(self._reader.get, seq)
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
        lo = 0 if seq_from is None else seq_from - 1
        hi = seq_to
        if after is not None:
            if newest_first:
                hi = after - 1 if hi is None else min(hi, after - 1)
            else:
                lo = max(lo, after)
        try:
            since_text = None if since is None else format_timestamp(since)
            until_text = None if until is None else format_timestamp(until)
        except ValueError as e:
            raise LedgerError(f"query time bounds must be timezone-aware: {e}") from e
        rows = await self._read(
            lambda: self._reader.query(
                lo=lo,
                hi=hi,
                filters=filters,
                since=since_text,
                until=until_text,
                limit=limit + 1,
                descending=newest_first,
            )
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
        found = await self._read(self._reader.part_hashes, parts)
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
        found = await self._read(self._reader.part_hashes, wanted)
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
        rows = await self._read(lambda: self._reader.checkpoints(limit=limit))
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
        row = await self._read(self._reader.checkpoint_at_least, want)
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
        if self._closed:
            raise LedgerError("the ledger is closed")
        db_path = self.data_dir / DB_FILE

        def run() -> VerifyReport:
            store, _ = SQLiteStore.open(
                db_path,
                read_only=True,
                create=False,
                synchronous=self.config.synchronous,
                origin=None,
            )
            try:
                return verify_connection(
                    store.connection,
                    str(db_path),
                    self.verifier,
                    self.origin,
                    progress,
                )
            finally:
                store.close()

        return await asyncio.to_thread(run)
