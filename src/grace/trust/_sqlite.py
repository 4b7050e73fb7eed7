"""The trust store's SQLite storage: ``trust.db``, one writer thread, memory mirrors disk.

Invariants (ADR 0007):

* **One change at a time.** Every change is one SQLite transaction run on the single
  writer thread: ``BEGIN IMMEDIATE`` → read the subject's row → compute → write → append
  the ledger entry → ``COMMIT``. Concurrent calls queue on that thread, so none is lost;
  ``BEGIN IMMEDIATE`` also serialises against another process writing the same file.
* **Nothing unrecorded.** The ledger entry is appended inside the transaction; if the
  append fails or is not confirmed within ``audit_timeout_s`` the transaction is rolled
  back and :class:`TrustError` raised.
* **Durable before return.** WAL journal, ``synchronous=FULL``.
* **Memory mirrors disk.** All subjects are loaded at open; the mirror is refreshed only
  by this store's own writes (run one store per file; another process's changes are the
  base of this store's next change to that subject, but its reads see them only after
  reopening). It is never stale in the PostgreSQL sense.
* **Cancellation-safe.** The writer thread finishes a transaction whose caller was cancelled.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import math
import sqlite3
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Final

import structlog

from grace.errors import TrustError
from grace.ledger.audit import AuditSink
from grace.trust._backend import Change, Mutation, append_change
from grace.trust.model import Dimension, SubjectState, Tally, TrustScore

__all__ = ["DB_FILE", "SCHEMA_VERSION", "SqliteTrustBackend"]

log = structlog.get_logger(__name__)

DB_FILE: Final = "trust.db"
FORMAT: Final = "grace-trust"
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    """
    CREATE TABLE IF NOT EXISTS subjects (
        subject_id TEXT PRIMARY KEY,
        reliability_s REAL NOT NULL,
        reliability_f REAL NOT NULL,
        governance_compliance_s REAL NOT NULL,
        governance_compliance_f REAL NOT NULL,
        verification_record_s REAL NOT NULL,
        verification_record_f REAL NOT NULL,
        anomaly_history_s REAL NOT NULL,
        anomaly_history_f REAL NOT NULL,
        updated_at TEXT NOT NULL,
        quarantined INTEGER NOT NULL CHECK (quarantined IN (0, 1)),
        quarantine_reason TEXT NOT NULL DEFAULT '',
        quarantined_by TEXT NOT NULL DEFAULT '',
        ledger_seq INTEGER
    ) STRICT
    """,
)
"""Counts are decayed pseudo-counts as of ``updated_at``; ``ledger_seq`` is the ledger entry
of the latest change (NULL without a ledger)."""

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
    "anomaly_history_s, anomaly_history_f, updated_at, quarantined, ledger_seq FROM subjects"
)
_UPSERT: Final = """
INSERT INTO subjects (subject_id, reliability_s, reliability_f, governance_compliance_s,
    governance_compliance_f, verification_record_s, verification_record_f,
    anomaly_history_s, anomaly_history_f, updated_at, quarantined)
VALUES (?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (subject_id) DO UPDATE SET
    reliability_s = excluded.reliability_s, reliability_f = excluded.reliability_f,
    governance_compliance_s = excluded.governance_compliance_s,
    governance_compliance_f = excluded.governance_compliance_f,
    verification_record_s = excluded.verification_record_s,
    verification_record_f = excluded.verification_record_f,
    anomaly_history_s = excluded.anomaly_history_s,
    anomaly_history_f = excluded.anomaly_history_f,
    updated_at = excluded.updated_at, quarantined = excluded.quarantined
"""


def _ts(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).isoformat()


def _state_from_row(row: tuple[Any, ...], path: Path) -> SubjectState:
    """Rebuild a subject from its row; a damaged row is a :class:`TrustError` (fail closed)."""
    subject_id = row[0]
    try:
        counts = [float(v) for v in row[1:9]]
        if not all(math.isfinite(v) and v >= 0 for v in counts):
            raise ValueError(f"evidence counts must be finite and >= 0, got {counts}")
        updated_at = _dt.datetime.fromisoformat(row[9])
        if updated_at.tzinfo is None:
            raise ValueError(f"updated_at {row[9]!r} has no timezone")
        tallies = {
            d: Tally(successes=counts[2 * i], failures=counts[2 * i + 1])
            for i, d in enumerate(_DIMENSIONS)
        }
        return SubjectState(
            subject_id=subject_id,
            updated_at=updated_at.astimezone(_dt.UTC),
            tallies=tallies,
            quarantined=bool(row[10]),
        )
    except (TypeError, ValueError) as e:
        raise TrustError(f"{path}: the record of subject {subject_id!r} is damaged: {e}") from e


class SqliteTrustBackend:
    """Subjects in one SQLite file; see the module docstring. Open with :meth:`open`."""

    def __init__(
        self,
        *,
        path: Path,
        conn: sqlite3.Connection,
        pool: ThreadPoolExecutor,
        states: dict[str, SubjectState],
        audit_timeout_s: float,
    ) -> None:
        self.path = path
        self.location = str(path)
        self._conn = conn
        self._pool = pool
        self._states = states
        """The in-memory mirror; written only on the writer thread, after a commit."""
        self._audit_timeout_s = audit_timeout_s

    @property
    def states(self) -> Mapping[str, SubjectState]:
        return self._states

    def stale(self) -> bool:
        return False

    @classmethod
    async def open(cls, path: Path, *, audit_timeout_s: float) -> SqliteTrustBackend:
        """Open (creating if missing) the database; ``path`` may be its directory."""
        pool = ThreadPoolExecutor(1, thread_name_prefix="grace-trust-writer")
        try:
            loop = asyncio.get_running_loop()
            path, conn, states = await loop.run_in_executor(pool, cls._open_sync, Path(path))
        except BaseException:
            pool.shutdown(wait=False)
            raise
        log.debug("trust_store_opened", path=str(path), subjects=len(states))
        return cls(path=path, conn=conn, pool=pool, states=states, audit_timeout_s=audit_timeout_s)

    @staticmethod
    def _open_sync(path: Path) -> tuple[Path, sqlite3.Connection, dict[str, SubjectState]]:
        if path.is_dir():
            path = path / DB_FILE
        if path.exists() and not path.is_file():
            raise TrustError(f"{path} exists but is not a file; it cannot be a trust database")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise TrustError(f"cannot create the directory of {path}: {e.strerror}") from e
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise TrustError(f"cannot open trust database {path}: {e}") from e
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            SqliteTrustBackend._initialise(conn, path)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise TrustError(f"{path}: cannot switch to WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            states = {
                row[0]: _state_from_row(row, path) for row in conn.execute(_SELECT).fetchall()
            }
        except sqlite3.Error as e:
            conn.close()
            raise TrustError(f"cannot use trust database {path}: {e}") from e
        except BaseException:
            conn.close()
            raise
        return path, conn, states

    @staticmethod
    def _initialise(conn: sqlite3.Connection, path: Path) -> None:
        """Create the schema in an empty database; refuse anything that is not ours."""
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as e:
            raise TrustError(f"{path} is not a SQLite database ({e})") from e
        if not tables:
            conn.execute("PRAGMA journal_mode = WAL")
            # Two processes may race to create it: IF NOT EXISTS / OR IGNORE make that benign.
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany(
                    "INSERT OR IGNORE INTO meta VALUES (?, ?)",
                    [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION))],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            tables = {"meta", "subjects"}
        if "meta" not in tables:
            raise TrustError(
                f"{path} is a SQLite database of something else (tables: "
                f"{', '.join(sorted(tables))}), not a Grace trust store"
            )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise TrustError(f"{path} is not a Grace trust store (format {meta.get('format')!r})")
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise TrustError(
                f"{path} has trust schema version {meta.get('schema_version')}; this Grace "
                f"reads version {SCHEMA_VERSION}"
            )
        if "subjects" not in tables:
            raise TrustError(f"{path} lacks the subjects table")

    async def close(self) -> None:
        """Finish the change in progress, then close the database."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._conn.close)
        finally:
            self._pool.shutdown(wait=True)

    async def change(
        self, subject_id: str, mutate: Mutation, now: _dt.datetime, audit: AuditSink | None
    ) -> TrustScore:
        """Run one change on the writer thread (see the module docstring for the steps)."""
        loop = asyncio.get_running_loop()
        # Submitted before the first await: a close() queued after us runs after us.
        return await loop.run_in_executor(
            self._pool, partial(self._transact, loop, subject_id, mutate, now, audit)
        )

    def _transact(
        self,
        loop: asyncio.AbstractEventLoop,
        subject_id: str,
        mutate: Mutation,
        now: _dt.datetime,
        audit: AuditSink | None,
    ) -> TrustScore:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise TrustError(f"cannot start a change in {self.path}: {e}") from e
        try:
            row = conn.execute(f"{_SELECT} WHERE subject_id = ?", (subject_id,)).fetchone()
            current = None if row is None else _state_from_row(row, self.path)
            change = mutate(current, now)
            conn.execute(_UPSERT, _row(change.state))
            if change.quarantine_note is not None:
                conn.execute(
                    "UPDATE subjects SET quarantine_reason = ?, quarantined_by = ? "
                    "WHERE subject_id = ?",
                    (*change.quarantine_note, subject_id),
                )
            seq = None
            if audit is not None:
                previous = None if row is None else row[11]
                seq = self._append_and_wait(loop, audit, change, previous)
            conn.execute(
                "UPDATE subjects SET ledger_seq = ? WHERE subject_id = ?", (seq, subject_id)
            )
            conn.execute("COMMIT")
        except BaseException as e:
            self._rollback()
            if isinstance(e, sqlite3.Error):
                raise TrustError(f"cannot store the change to {subject_id!r}: {e}") from e
            raise
        self._states[subject_id] = change.state
        return change.score

    def _rollback(self) -> None:
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error as e:  # the original error is the one worth raising
            log.exception("trust_rollback_failed", path=str(self.path), error=str(e))

    def _append_and_wait(
        self,
        loop: asyncio.AbstractEventLoop,
        audit: AuditSink,
        change: Change,
        previous_seq: int | None,
    ) -> int:
        """Append the ledger entry from the writer thread; its seq, or TrustError."""
        what = f"{change.action} of {change.state.subject_id!r}"
        try:
            future = asyncio.run_coroutine_threadsafe(
                append_change(audit, change, previous_seq), loop
            )
        except RuntimeError as e:  # the event loop is closed
            raise TrustError(f"cannot record {what} in the ledger: {e}; nothing changed") from e
        try:
            receipt = future.result(timeout=self._audit_timeout_s)
        except TimeoutError as e:
            future.cancel()
            raise TrustError(
                f"the ledger did not confirm {what} within {self._audit_timeout_s}s; "
                "nothing changed"
            ) from e
        except Exception as e:  # any failure to record is a refusal to change
            raise TrustError(f"recording {what} in the ledger failed ({e}); nothing changed") from e
        return int(receipt.seq)


def _row(state: SubjectState) -> tuple[Any, ...]:
    counts = []
    for d in _DIMENSIONS:
        tally = state.tallies[d]
        counts += [tally.successes, tally.failures]
    return (state.subject_id, *counts, _ts(state.updated_at), int(state.quarantined))
