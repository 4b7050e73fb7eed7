"""SQLite storage of the ledger: schema, one writer connection, reader connections.

Layout of ``<data_dir>/ledger.db`` (schema version 1):

* ``meta(key, value)``: ``format = grace-ledger``, ``schema_version``, ``origin``.
* ``entries(seq, entry, entry_hash, nodes)``: ``entry`` is the canonical JSON bytes,
  ``entry_hash`` the RFC 6962 leaf hash of them, ``nodes`` the interior Merkle nodes this
  entry's append completed (see ``_tree.node_location``). ``subsystem``, ``actor``,
  ``action`` and ``ts`` are *virtual* generated columns read out of ``entry`` for the
  query indexes, so they can never disagree with the hashed bytes.
* ``checkpoints(tree_size, created_at, note)``: signed notes.

A batch of entries and a checkpoint are written in one transaction, so a crash leaves
either all of a batch or none of it. Each connection is used by one thread at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from grace.errors import LedgerError, LedgerFormatError
from grace.ledger._tree import CompactRange, part_locations, pick_parts
from grace.ledger.merkle import Part, perfect_parts

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION: Final = 1
FORMAT: Final = "grace-ledger"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    entry_hash BLOB NOT NULL,
    nodes BLOB NOT NULL,
    subsystem TEXT GENERATED ALWAYS AS (json_extract(CAST(entry AS TEXT), '$.subsystem')) VIRTUAL,
    actor TEXT GENERATED ALWAYS AS (json_extract(CAST(entry AS TEXT), '$.actor')) VIRTUAL,
    action TEXT GENERATED ALWAYS AS (json_extract(CAST(entry AS TEXT), '$.action')) VIRTUAL,
    ts TEXT GENERATED ALWAYS AS (json_extract(CAST(entry AS TEXT), '$.timestamp')) VIRTUAL
);
CREATE INDEX entries_subsystem ON entries(subsystem, seq);
CREATE INDEX entries_actor ON entries(actor, seq);
CREATE INDEX entries_action ON entries(action, seq);
CREATE INDEX entries_ts ON entries(ts);
CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    note TEXT NOT NULL
) STRICT;
"""

_FILTER_COLUMNS: Final = ("subsystem", "actor", "action")


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rwc'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        # Tampered TEXT need not be UTF-8: decode leniently so checks report it, not crash.
        conn.text_factory = _lenient_text
        conn.execute("PRAGMA busy_timeout = 10000")
    except sqlite3.Error as e:
        raise LedgerError(f"cannot open ledger database {path}: {e}") from e
    return conn


class SQLiteStore:
    """One SQLite connection to a ledger database."""

    __slots__ = ("_conn", "path")

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: Path, *, read_only: bool, create: bool, synchronous: str, origin: str | None
    ) -> tuple[SQLiteStore, str]:
        """Open (and with ``create``, initialise) the database; return it and its origin."""
        if path.exists() and not path.is_file():
            raise LedgerFormatError(f"{path} exists but is not a file; it cannot be a ledger")
        if not path.exists() and not create:
            raise LedgerError(f"no ledger at {path.parent} (missing {path.name})")
        conn = _connect(path, read_only=read_only)
        store = cls(conn, path)
        try:
            found = store._read_meta()
            if found is None:
                if read_only or not create:
                    raise LedgerFormatError(f"{path} is an empty database, not a Grace ledger")
                conn.execute("PRAGMA journal_mode = WAL")
                store._initialise(origin or "grace.local/ledger")
                found = store._read_meta()
                if found is None:  # pragma: no cover - we just wrote it
                    raise LedgerFormatError(f"{path}: initialising the ledger failed")
            if not read_only:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LedgerError(f"{path}: cannot switch to WAL journal mode (got {mode})")
                conn.execute(f"PRAGMA synchronous = {synchronous}")
        except BaseException:
            conn.close()
            raise
        return store, found

    def _read_meta(self) -> str | None:
        """Check the database is a Grace ledger; return its origin (None: empty database)."""
        try:
            tables = {
                r[0]
                for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as e:
            raise LedgerFormatError(f"{self.path} is not a SQLite database ({e})") from e
        if not tables:
            return None
        if "meta" not in tables:
            raise LedgerFormatError(
                f"{self.path} is a SQLite database of something else (tables: "
                f"{', '.join(sorted(tables))}), not a Grace ledger"
            )
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise LedgerFormatError(
                f"{self.path} is not a Grace ledger (format {meta.get('format')!r})"
            )
        version = meta.get("schema_version", "")
        if version != str(SCHEMA_VERSION):
            raise LedgerFormatError(
                f"{self.path} has ledger schema version {version}; this Grace reads version "
                f"{SCHEMA_VERSION}"
            )
        missing = {"entries", "checkpoints"} - tables
        if missing:
            raise LedgerFormatError(f"{self.path} lacks tables {sorted(missing)}")
        return str(meta["origin"])

    def _initialise(self, origin: str) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            c.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("origin", origin)],
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    # -- writer --------------------------------------------------------------------------

    def load_tree(self) -> tuple[CompactRange, bytes | None]:
        """The tree's growing edge and the last entry hash."""
        c = self._conn
        size = c.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()[0]
        count = c.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        if count != size:
            raise LedgerFormatError(
                f"{self.path} is inconsistent ({count} entries up to seq {size}); "
                "run `grace audit verify`"
            )
        parts = perfect_parts(0, size)
        found = self.part_hashes(parts)
        tree = CompactRange(size, [found[p] for p in parts])
        last = None
        if size:
            last = c.execute("SELECT entry_hash FROM entries WHERE seq = ?", (size,)).fetchone()[0]
        return tree, last

    def commit(
        self,
        rows: Sequence[tuple[int, bytes, bytes, bytes]],
        checkpoint: tuple[int, str, str] | None,
    ) -> None:
        """Write entries ``(seq, entry, entry_hash, nodes)`` and a checkpoint atomically."""
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                if rows:
                    c.executemany(
                        "INSERT INTO entries(seq, entry, entry_hash, nodes) VALUES (?,?,?,?)", rows
                    )
                if checkpoint is not None:
                    c.execute(
                        "INSERT INTO checkpoints(tree_size, created_at, note) VALUES (?,?,?)",
                        checkpoint,
                    )
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise LedgerError(f"writing to {self.path} failed, nothing was appended: {e}") from e

    # -- readers -------------------------------------------------------------------------

    def get(self, seq: int) -> tuple[bytes, bytes] | None:
        """Stored bytes and hash of one entry."""
        row = self._conn.execute(
            "SELECT entry, entry_hash FROM entries WHERE seq = ?", (seq,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def query(
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
        where = ["seq > ?"]
        args: list[Any] = [lo]
        if hi is not None:
            where.append("seq <= ?")
            args.append(hi)
        for column, value in filters.items():
            if column not in _FILTER_COLUMNS:  # pragma: no cover - guarded by the Ledger API
                raise ValueError(column)
            where.append(f"{column} = ?")
            args.append(value)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        order = "DESC" if descending else "ASC"
        sql = (
            "SELECT seq, entry, entry_hash FROM entries WHERE "  # noqa: S608 - fixed names only
            + " AND ".join(where)
            + f" ORDER BY seq {order} LIMIT ?"
        )
        args.append(limit)
        return self._conn.execute(sql, args).fetchall()

    def part_hashes(self, parts: Iterable[Part]) -> dict[Part, bytes]:
        """Hashes of perfect subtrees, in one query.

        Leaves are entry hashes; interior nodes sit in the ``nodes`` column of the entry
        whose append completed them.
        """
        where = part_locations(parts)
        seqs = sorted({seq for seq, _ in where.values()})
        found: dict[int, tuple[bytes, bytes]] = {}
        for chunk in range(0, len(seqs), 500):
            wanted = seqs[chunk : chunk + 500]
            marks = ",".join("?" * len(wanted))
            for seq, h, nodes in self._conn.execute(
                f"SELECT seq, entry_hash, nodes FROM entries WHERE seq IN ({marks})",  # noqa: S608
                wanted,
            ):
                found[seq] = (h, nodes)
        return pick_parts(where, found, self.path)

    def rows(self, lo: int, hi: int) -> list[tuple[int, bytes, bytes, bytes]]:
        """Stored rows ``(seq, entry, entry_hash, nodes)`` with ``lo < seq <= hi``, by seq."""
        return self._conn.execute(
            "SELECT seq, entry, entry_hash, nodes FROM entries WHERE seq > ? AND seq <= ? "
            "ORDER BY seq",
            (lo, hi),
        ).fetchall()

    def checkpoints(self, *, limit: int | None = None) -> list[tuple[int, str, str]]:
        """Stored checkpoints ``(tree_size, created_at, note)``, newest first."""
        sql = "SELECT tree_size, created_at, note FROM checkpoints ORDER BY tree_size DESC"
        if limit is not None:
            return self._conn.execute(sql + " LIMIT ?", (limit,)).fetchall()
        return self._conn.execute(sql).fetchall()

    def checkpoint_at_least(self, size: int) -> tuple[int, str, str] | None:
        """The smallest stored checkpoint covering ``size`` entries."""
        row = self._conn.execute(
            "SELECT tree_size, created_at, note FROM checkpoints WHERE tree_size >= ? "
            "ORDER BY tree_size LIMIT 1",
            (size,),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def size(self) -> int:
        """Highest committed seq."""
        return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()[0])

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection (for the verifier, which streams whole tables)."""
        return self._conn
