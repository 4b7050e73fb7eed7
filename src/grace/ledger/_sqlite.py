"""The SQLite backend: a data directory with ``ledger.db``, ``ledger.key`` and ``ledger.lock``.

One process writes (an exclusive ``flock`` on ``ledger.lock``, released by the kernel when
the process dies); others open read-only. The writer's in-memory chain head is therefore
always the store's head, and sequencing happens before the commit is handed to the
writer thread (ADR 0002). Each connection is used by one thread: a reader thread and a
writer thread per ledger handle.
"""

from __future__ import annotations

import asyncio
import binascii
import fcntl
import os
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from grace.errors import LedgerError, LedgerFormatError, LedgerLocked
from grace.ledger import merkle
from grace.ledger._backend import Item, Opened, Row, Sequenced, Sequencer, WriterState
from grace.ledger._codec import GENESIS_HASH_HEX, format_timestamp
from grace.ledger._store import SQLiteStore
from grace.ledger._verify import Progress, verify_connection
from grace.ledger.checkpoint import (
    Checkpoint,
    NoteVerifier,
    load_or_create_signing_key,
    load_verifier,
)
from grace.ledger.entry import Entry, VerifyReport
from grace.ledger.merkle import Part

__all__ = ["DB_FILE", "KEY_FILE", "LOCK_FILE", "SQLiteReader", "SQLiteWriter", "open_sqlite"]

DB_FILE: Final = "ledger.db"
KEY_FILE: Final = "ledger.key"
LOCK_FILE: Final = "ledger.lock"

_T = TypeVar("_T")


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


class SQLiteReader:
    """Reads on one read-only connection and one thread; verify opens its own snapshot."""

    __slots__ = ("_pool", "_store", "_synchronous")

    def __init__(self, store: SQLiteStore, synchronous: str) -> None:
        self._store = store
        self._synchronous = synchronous
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="grace-ledger-read")

    @property
    def location(self) -> str:
        """``sqlite:<data dir>``."""
        return f"sqlite:{self._store.path.parent}"

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def size(self) -> int:
        """Highest committed seq."""
        return await self._run(self._store.size)

    async def get(self, seq: int) -> tuple[bytes, bytes] | None:
        """Stored bytes and hash of one entry."""
        return await self._run(self._store.get, seq)

    async def rows(self, lo: int, hi: int) -> list[Row]:
        """Stored rows with ``lo < seq <= hi``, in seq order."""
        return await self._run(self._store.rows, lo, hi)

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
        return await self._run(
            lambda: self._store.query(
                lo=lo,
                hi=hi,
                filters=filters,
                since=since,
                until=until,
                limit=limit,
                descending=descending,
            )
        )

    async def part_hashes(self, parts: Collection[Part]) -> dict[Part, bytes]:
        """Hashes of perfect subtrees, in one query."""
        return await self._run(self._store.part_hashes, parts)

    async def checkpoints(self, *, limit: int | None) -> list[tuple[int, str, str]]:
        """Stored checkpoints, newest first."""
        return await self._run(lambda: self._store.checkpoints(limit=limit))

    async def checkpoint_at_least(self, size: int) -> tuple[int, str, str] | None:
        """The smallest stored checkpoint covering ``size`` entries."""
        return await self._run(self._store.checkpoint_at_least, size)

    async def verify(
        self, verifier: NoteVerifier, origin: str, progress: Progress | None
    ) -> VerifyReport:
        """Full verification on a connection of its own (one read snapshot), in a thread."""
        db_path = self._store.path
        synchronous = self._synchronous

        def run() -> VerifyReport:
            store, _ = SQLiteStore.open(
                db_path, read_only=True, create=False, synchronous=synchronous, origin=None
            )
            try:
                return verify_connection(store.connection, str(db_path), verifier, origin, progress)
            finally:
                store.close()

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        await self._run(self._store.close)
        self._pool.shutdown(wait=True)


class SQLiteWriter:
    """Commits on one connection and one thread, while holding the directory's write lock."""

    __slots__ = ("_lock_fd", "_pool", "_store")

    exclusive = True

    def __init__(self, store: SQLiteStore, lock_fd: int) -> None:
        self._store = store
        self._lock_fd: int | None = lock_fd
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="grace-ledger-write")

    async def commit(self, state: WriterState, items: list[Item], sequence: Sequencer) -> Sequenced:
        """Sequence on the event loop (the head is ours alone), write on the writer thread."""
        work = sequence(state, items)
        await asyncio.get_running_loop().run_in_executor(
            self._pool, self._store.commit, work.rows, work.checkpoint_row
        )
        return work

    async def close(self) -> None:
        """Close the connection, stop the thread, release the lock."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._store.close)
        self._pool.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _verifier(path: Path, origin: str, public_key: str | None) -> NoteVerifier:
    if public_key:
        return load_verifier(public_key, name=origin)
    key_path = path / KEY_FILE
    if not key_path.exists():
        raise LedgerError(f"no signing key {key_path}; pass the ledger's public key")
    return load_or_create_signing_key(key_path, origin).verifier


def open_sqlite(
    path: Path,
    *,
    origin_wanted: str,
    synchronous: str,
    read_only: bool,
    public_key: str | None,
) -> Opened:
    """Open files and stores (blocking: run it in a thread)."""
    if path.exists() and not path.is_dir():
        raise LedgerFormatError(f"data dir {path} is a file, not a directory")
    if read_only:
        reader_store, origin = SQLiteStore.open(
            path / DB_FILE, read_only=True, create=False, synchronous=synchronous, origin=None
        )
        try:
            verifier = _verifier(path, origin, public_key)
        except BaseException:
            reader_store.close()
            raise
        return Opened(
            origin=origin, reader=SQLiteReader(reader_store, synchronous), verifier=verifier
        )
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
            synchronous=synchronous,
            origin=origin_wanted,
        )
        stores.append(writer)
        if origin != origin_wanted:
            raise LedgerFormatError(
                f"the ledger in {path} is the log {origin!r}; settings name {origin_wanted!r}"
            )
        reader_store, _ = SQLiteStore.open(
            path / DB_FILE, read_only=True, create=False, synchronous=synchronous, origin=None
        )
        stores.append(reader_store)
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
        state = WriterState(
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
    return Opened(
        origin=origin,
        reader=SQLiteReader(reader_store, synchronous),
        verifier=verifier,
        writer=SQLiteWriter(writer, lock_fd),
        state=state,
    )
