"""The trust store: per-subject reputation in ``trust.db``, every change in the ledger.

Invariants:

* **One change at a time.** Every change (evidence, quarantine, release) is one SQLite
  transaction run on the store's single writer thread: ``BEGIN IMMEDIATE`` → read the
  subject's row → compute → write → append the ledger entry → ``COMMIT``. Concurrent
  calls queue on that thread, so none is lost; ``BEGIN IMMEDIATE`` also serialises
  against another process writing the same file.
* **Nothing unrecorded.** The ledger entry is appended inside the transaction, before
  ``COMMIT``; if the append fails or the ledger does not confirm within
  ``audit_timeout_s``, the transaction is rolled back and the call raises
  :class:`TrustError`. So every persisted change has a ledger entry. The reverse can
  happen only if ``COMMIT`` itself fails (or the process dies) after a confirmed append:
  then the ledger holds an entry for a change that did not take effect. Each row stores
  the ledger ``seq`` of its latest change and each entry names the subject's previous
  one (``previous_seq``), so such an entry is exactly one no later entry points back to.
* **Durable before return.** WAL journal, ``synchronous=FULL``: a returned score is on disk.
* **Memory mirrors disk.** All subjects are loaded at open; reads (``score``,
  ``get_trust_score``, ``is_quarantined``, ``list_scores``) never touch SQLite and decay
  from the stored ``updated_at`` with the injected clock, so a restart gives the same
  scores. The mirror is refreshed only by this store's own writes: run one store per
  ``trust.db`` (changes made by another process are used as the base of this store's next
  change to that subject, but its reads do not see them until reopened).
* **Cancellation-safe.** A cancelled caller does not abandon a transaction half-way: the
  writer thread finishes it (commit or rollback) on its own.
* Bad input (:func:`~grace.trust.model.check_subject_id`, ``parse_evidence``,
  ``clamp_weight``, ``check_reason``) raises :class:`TrustError` before anything is written.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import heapq
import math
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import structlog

from grace.errors import TrustError
from grace.ledger.audit import AuditSink
from grace.ledger.entry import Receipt
from grace.trust.model import (
    EVIDENCE_EFFECTS,
    Dimension,
    Evidence,
    SubjectState,
    Tally,
    TrustConfig,
    TrustScore,
    apply_evidence,
    check_reason,
    check_subject_id,
    clamp_weight,
    decay_state,
    parse_evidence,
    score_state,
)
from grace.types import Clock, SystemClock

__all__ = ["DB_FILE", "SCHEMA_VERSION", "TrustStore"]

log = structlog.get_logger(__name__)

DB_FILE: Final = "trust.db"
FORMAT: Final = "grace-trust"
SCHEMA_VERSION: Final = 1
SUBSYSTEM: Final = "trust"
RECORD_ACTOR: Final = "trust_store"
"""The ledger actor of evidence updates (quarantine and release name their own actor)."""
MAX_LIST_LIMIT: Final = 10_000

_T = TypeVar("_T")

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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Change:
    """A computed change and how the ledger describes it."""

    state: SubjectState
    score: TrustScore
    """The subject's score right after the change."""
    action: str
    actor: str
    result: str
    payload: dict[str, Any]
    quarantine_note: tuple[str, str] | None = None
    """``(reason, actor)`` to store with a quarantine or release; None keeps the stored one."""


_Mutation = Callable[[SubjectState | None, _dt.datetime], _Change]


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


class TrustStore:
    """Reputation of components and actors, persisted in SQLite and audited in the ledger.

    Satisfies ``grace.governance.model.TrustSource`` and, as the bound method ``score``,
    the mesh's ``TrustScorer``. Open with :meth:`open`; close with :meth:`close` (or use
    ``async with``).
    """

    def __init__(
        self,
        *,
        path: Path,
        conn: sqlite3.Connection,
        pool: ThreadPoolExecutor,
        states: dict[str, SubjectState],
        config: TrustConfig,
        clock: Clock,
        audit: AuditSink | None,
    ) -> None:
        self.path = path
        self.config = config
        self._conn = conn
        self._pool = pool
        self._states = states
        """The in-memory mirror; written only on the writer thread, after a commit."""
        self._clock = clock
        self._audit = audit
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        config: TrustConfig = TrustConfig(),  # noqa: B008 - frozen, never mutated
        clock: Clock = SystemClock(),  # noqa: B008 - stateless
        audit: AuditSink | None = None,
    ) -> TrustStore:
        """Open (creating if missing) the trust database and load every subject.

        ``path`` is the database file; a directory means ``<path>/trust.db``. Without
        ``audit`` changes are not put in any ledger (tests, tools); the runtime passes
        the ledger.
        """
        pool = ThreadPoolExecutor(1, thread_name_prefix="grace-trust-writer")
        try:
            loop = asyncio.get_running_loop()
            path, conn, states = await loop.run_in_executor(pool, cls._open_sync, Path(path))
        except BaseException:
            pool.shutdown(wait=False)
            raise
        log.debug("trust_store_opened", path=str(path), subjects=len(states))
        return cls(
            path=path,
            conn=conn,
            pool=pool,
            states=states,
            config=config,
            clock=clock,
            audit=audit,
        )

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
            TrustStore._initialise(conn, path)
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
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._conn.close)
        finally:
            self._pool.shutdown(wait=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TrustError(f"the trust store {self.path} is closed")

    # -- reading -------------------------------------------------------------------------

    async def get_trust_score(self, subject_id: str) -> TrustScore:
        """The subject's trust now; an unknown subject gets the prior with confidence 0."""
        check_subject_id(subject_id)
        self._check_open()
        state = self._states.get(subject_id)
        return score_state(subject_id, state, self._clock.now(), self.config)

    async def score(self, subject_id: str) -> float:
        """The composite score in [0, 1]; 0.0 while the subject is quarantined."""
        return (await self.get_trust_score(subject_id)).composite_score

    def is_quarantined(self, subject_id: str) -> bool:
        """Whether the subject is quarantined (from memory, no I/O)."""
        check_subject_id(subject_id)
        self._check_open()
        state = self._states.get(subject_id)
        return state is not None and state.quarantined

    async def list_scores(self, *, limit: int = 100) -> list[TrustScore]:
        """Known subjects, least trusted first (quarantined ones lead), ties by id."""
        if type(limit) is not int or not 1 <= limit <= MAX_LIST_LIMIT:
            raise TrustError(f"list limit must be an integer in 1..{MAX_LIST_LIMIT}, got {limit!r}")
        self._check_open()
        now = self._clock.now()
        # dict.copy is atomic under the GIL, so the writer thread cannot disturb the walk;
        # scoring every subject is ~8 µs each, so it runs off the event loop.
        states = self._states.copy()
        return await asyncio.to_thread(_least_trusted, states, now, self.config, limit)

    # -- changing ------------------------------------------------------------------------

    async def record(
        self, subject_id: str, evidence: Evidence, *, weight: float = 1.0, reason: str = ""
    ) -> TrustScore:
        """Add one piece of evidence about ``subject_id``; return its new score.

        ``weight`` must be a finite number > 0 and is clamped to ``config.max_update``.
        Durable and in the ledger (``trust.updated``) before this returns; on any failure
        :class:`TrustError` is raised and nothing changed.
        """
        subject_id = check_subject_id(subject_id)
        kind = parse_evidence(evidence)
        applied = clamp_weight(weight, self.config.max_update)
        reason = check_reason(reason)
        dimension, positive = EVIDENCE_EFFECTS[kind]
        config = self.config

        def mutate(current: SubjectState | None, now: _dt.datetime) -> _Change:
            base = current or SubjectState(subject_id=subject_id, updated_at=now)
            state = apply_evidence(base, kind, applied, now, config)
            old = score_state(subject_id, current, now, config)
            new = score_state(subject_id, state, now, config)
            return _Change(
                state=state,
                score=new,
                action="trust.updated",
                actor=RECORD_ACTOR,
                result=str(new.level),
                payload={
                    "event": "trust_updated",
                    "evidence": str(kind),
                    "dimension": str(dimension),
                    "positive": positive,
                    "weight": applied,
                    "requested_weight": float(weight),
                    "reason": reason,
                    **_transition(old, new),
                },
            )

        score = await self._change(subject_id, mutate)
        log.debug(
            "trust_updated",
            subject=subject_id,
            evidence=str(kind),
            weight=applied,
            score=score.composite_score,
        )
        return score

    async def quarantine(self, subject_id: str, *, reason: str, actor: str) -> TrustScore:
        """Force the subject's score to 0.0 until :meth:`release` (recorded in the ledger).

        Quarantining an unknown or already quarantined subject is allowed (fail closed);
        each call is a ledger entry ``trust.quarantined`` naming ``actor`` and ``reason``.
        """
        subject_id = check_subject_id(subject_id)
        actor = check_subject_id(actor, what="actor")
        reason = check_reason(reason, required=True)
        half_life = self.config.half_life_s
        config = self.config

        def mutate(current: SubjectState | None, now: _dt.datetime) -> _Change:
            base = (
                SubjectState(subject_id=subject_id, updated_at=now)
                if current is None
                else decay_state(current, now, half_life)
            )
            state = replace(base, quarantined=True)
            old = score_state(subject_id, current, now, config)
            new = score_state(subject_id, state, now, config)
            return _Change(
                state=state,
                score=new,
                action="trust.quarantined",
                actor=actor,
                result="quarantined",
                payload={
                    "event": "trust_quarantined",
                    "reason": reason,
                    "already_quarantined": old.quarantined,
                    **_transition(old, new),
                },
                quarantine_note=(reason, actor),
            )

        score = await self._change(subject_id, mutate)
        log.info("trust_quarantined", subject=subject_id, actor=actor, reason=reason)
        return score

    async def release(self, subject_id: str, *, reason: str, actor: str) -> TrustScore:
        """End a quarantine: the evidence-based score applies again (``trust.released``).

        Releasing a subject that is not quarantined is a :class:`TrustError` (a mistyped
        id must not pass silently); nothing is written then.
        """
        subject_id = check_subject_id(subject_id)
        actor = check_subject_id(actor, what="actor")
        reason = check_reason(reason, required=True)
        half_life = self.config.half_life_s
        config = self.config

        def mutate(current: SubjectState | None, now: _dt.datetime) -> _Change:
            if current is None or not current.quarantined:
                raise TrustError(f"subject {subject_id!r} is not quarantined; nothing to release")
            state = replace(decay_state(current, now, half_life), quarantined=False)
            old = score_state(subject_id, current, now, config)
            new = score_state(subject_id, state, now, config)
            return _Change(
                state=state,
                score=new,
                action="trust.released",
                actor=actor,
                result=str(new.level),
                payload={"event": "trust_released", "reason": reason, **_transition(old, new)},
                quarantine_note=("", ""),
            )

        score = await self._change(subject_id, mutate)
        log.info("trust_released", subject=subject_id, actor=actor, reason=reason)
        return score

    # -- the transaction -----------------------------------------------------------------

    async def _change(self, subject_id: str, mutate: _Mutation) -> TrustScore:
        """Run one change on the writer thread (see the module docstring for the steps)."""
        self._check_open()
        now = self._clock.now()
        loop = asyncio.get_running_loop()
        # No await between the open check and the submission: close() queues behind us.
        return await loop.run_in_executor(
            self._pool, partial(self._transact, loop, subject_id, mutate, now)
        )

    def _transact(
        self,
        loop: asyncio.AbstractEventLoop,
        subject_id: str,
        mutate: _Mutation,
        now: _dt.datetime,
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
            if self._audit is not None:
                previous = None if row is None else row[11]
                seq = self._append_and_wait(loop, self._audit, change, previous)
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
        change: _Change,
        previous_seq: int | None,
    ) -> int:
        """Append the ledger entry from the writer thread; its seq, or TrustError."""
        what = f"{change.action} of {change.state.subject_id!r}"
        try:
            future = asyncio.run_coroutine_threadsafe(_append(audit, change, previous_seq), loop)
        except RuntimeError as e:  # the event loop is closed
            raise TrustError(f"cannot record {what} in the ledger: {e}; nothing changed") from e
        try:
            receipt = future.result(timeout=self.config.audit_timeout_s)
        except TimeoutError as e:
            future.cancel()
            raise TrustError(
                f"the ledger did not confirm {what} within {self.config.audit_timeout_s}s; "
                "nothing changed"
            ) from e
        except Exception as e:  # any failure to record is a refusal to change
            raise TrustError(f"recording {what} in the ledger failed ({e}); nothing changed") from e
        return int(receipt.seq)


async def _append(audit: AuditSink, change: _Change, previous_seq: int | None) -> Receipt:
    return await audit.append(
        subsystem=SUBSYSTEM,
        actor=change.actor,
        action=change.action,
        resource=change.state.subject_id,
        result=change.result,
        payload={
            "subject_id": change.state.subject_id,
            **change.payload,
            "previous_seq": previous_seq,
        },
    )


def _least_trusted(
    states: dict[str, SubjectState], now: _dt.datetime, config: TrustConfig, limit: int
) -> list[TrustScore]:
    scores = (score_state(sid, state, now, config) for sid, state in states.items())
    return heapq.nsmallest(limit, scores, key=lambda s: (s.composite_score, s.subject_id))


def _transition(old: TrustScore, new: TrustScore) -> dict[str, Any]:
    """The ledger's view of a change: composite and level before and after, and why."""
    return {
        "old_composite": old.composite_score,
        "new_composite": new.composite_score,
        "old_level": str(old.level),
        "new_level": str(new.level),
        "confidence": new.confidence,
        "evidence_count": new.evidence_count,
        "quarantined": new.quarantined,
        "dimensions": {str(d): new.dimension(d) for d in Dimension},
    }


def _row(state: SubjectState) -> tuple[Any, ...]:
    counts = []
    for d in _DIMENSIONS:
        tally = state.tallies[d]
        counts += [tally.successes, tally.failures]
    return (state.subject_id, *counts, _ts(state.updated_at), int(state.quarantined))
