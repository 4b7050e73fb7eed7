"""The trust store: per-subject reputation, every change in the ledger.

The rules live here once; storage is a private backend (:mod:`grace.trust._backend`):
``<data_dir>/trust.db`` (:meth:`TrustStore.open`, :mod:`grace.trust._sqlite`) or PostgreSQL
shared by several instances (:meth:`TrustStore.open_postgres`, :mod:`grace.trust._postgres`,
ADR 0013).

Invariants:

* **One change at a time per subject.** Every change (evidence, quarantine, release) is
  one backend transaction that locks the subject's row, reads it, computes, writes,
  appends the ledger entry and commits; concurrent calls — from this store or another
  instance — are serialised on the row, so none is lost.
* **Nothing unrecorded.** The ledger entry is appended inside the transaction, before the
  commit; if the append fails or the ledger does not confirm within ``audit_timeout_s``,
  the transaction is rolled back and the call raises :class:`TrustError`. The reverse
  (an entry whose change did not commit) can happen only if the commit itself fails after
  a confirmed append; each row stores the ledger ``seq`` of its latest change and each
  entry names the subject's previous one (``previous_seq``), so such an entry is exactly
  one no later entry points back to.
* **Reads from memory.** ``score``, ``get_trust_score``, ``is_quarantined`` and
  ``list_scores`` never do I/O; they decay from the stored ``updated_at`` with the
  injected clock, so a restart gives the same scores.
* **Fail closed when stale.** If the backend says its snapshot may be missing other
  instances' changes (PostgreSQL: no successful refresh for ``max_stale_s``), every
  composite score reads 0.0 (confidence 0.0, level very_low); ``is_quarantined`` keeps
  answering from the snapshot (ADR 0013 says why).
* **Cancellation-safe.** A cancelled caller does not abandon a transaction half-way.
* Bad input (:func:`~grace.trust.model.check_subject_id`, ``parse_evidence``,
  ``clamp_weight``, ``check_reason``) raises :class:`TrustError` before anything is written.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import heapq
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import structlog

from grace.errors import TrustError
from grace.ledger.audit import AuditSink
from grace.trust._backend import Change, Mutation, TrustBackend
from grace.trust._sqlite import DB_FILE, SCHEMA_VERSION, SqliteTrustBackend
from grace.trust.model import (
    EVIDENCE_EFFECTS,
    Dimension,
    Evidence,
    SubjectState,
    TrustConfig,
    TrustLevel,
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

RECORD_ACTOR: Final = "trust_store"
"""The ledger actor of evidence updates (quarantine and release name their own actor)."""
MAX_LIST_LIMIT: Final = 10_000


class TrustStore:
    """Reputation of components and actors, persisted and audited in the ledger.

    Satisfies ``grace.governance.model.TrustSource`` and, as the bound method ``score``,
    the mesh's ``TrustScorer``. Open with :meth:`open` (SQLite) or :meth:`open_postgres`;
    close with :meth:`close` (or use ``async with``).
    """

    def __init__(
        self,
        *,
        backend: TrustBackend,
        config: TrustConfig,
        clock: Clock,
        audit: AuditSink | None,
    ) -> None:
        self.config = config
        self.location = backend.location
        """Where the subjects live, for messages (a path or a password-free DSN)."""
        self.path: Path | None = backend.path if isinstance(backend, SqliteTrustBackend) else None
        """The SQLite file; None on PostgreSQL."""
        self._backend = backend
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
        backend = await SqliteTrustBackend.open(path, audit_timeout_s=config.audit_timeout_s)
        return cls(backend=backend, config=config, clock=clock, audit=audit)

    @classmethod
    async def open_postgres(
        cls,
        dsn: str,
        *,
        config: TrustConfig = TrustConfig(),  # noqa: B008 - frozen, never mutated
        clock: Clock = SystemClock(),  # noqa: B008 - stateless
        audit: AuditSink | None = None,
        max_stale_s: float = 15.0,
        heartbeat_s: float = 1.0,
    ) -> TrustStore:
        """Open the trust tables in PostgreSQL at ``dsn`` (created or migrated), shared by
        every instance of a deployment; tables live in the DSN's current schema.

        Reads come from a snapshot refreshed on every instance's change (LISTEN/NOTIFY)
        and checked every ``heartbeat_s``; after ``max_stale_s`` without a successful
        refresh every score reads 0.0 until one succeeds (ADR 0013).
        """
        from grace.trust._postgres import PostgresTrustBackend  # asyncpg only when needed

        backend = await PostgresTrustBackend.open(
            dsn,
            audit_timeout_s=config.audit_timeout_s,
            max_stale_s=max_stale_s,
            heartbeat_s=heartbeat_s,
        )
        return cls(backend=backend, config=config, clock=clock, audit=audit)

    async def close(self) -> None:
        """Finish the change in progress, then close the storage."""
        if self._closed:
            return
        self._closed = True
        await self._backend.close()

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
            raise TrustError(f"the trust store {self.location} is closed")

    # -- reading -------------------------------------------------------------------------

    async def get_trust_score(self, subject_id: str) -> TrustScore:
        """The subject's trust now; an unknown subject gets the prior with confidence 0.

        While the snapshot is stale (PostgreSQL only) the composite reads 0.0."""
        check_subject_id(subject_id)
        self._check_open()
        state = self._backend.states.get(subject_id)
        score = score_state(subject_id, state, self._clock.now(), self.config)
        return _distrusted(score) if self._backend.stale() else score

    async def score(self, subject_id: str) -> float:
        """The composite score in [0, 1]; 0.0 while the subject is quarantined."""
        return (await self.get_trust_score(subject_id)).composite_score

    def is_quarantined(self, subject_id: str) -> bool:
        """Whether the subject is quarantined (from memory, no I/O)."""
        check_subject_id(subject_id)
        self._check_open()
        state = self._backend.states.get(subject_id)
        return state is not None and state.quarantined

    async def list_scores(self, *, limit: int = 100) -> list[TrustScore]:
        """Known subjects, least trusted first (quarantined ones lead), ties by id."""
        if type(limit) is not int or not 1 <= limit <= MAX_LIST_LIMIT:
            raise TrustError(f"list limit must be an integer in 1..{MAX_LIST_LIMIT}, got {limit!r}")
        self._check_open()
        now = self._clock.now()
        # dict(...) of a dict is atomic under the GIL, so a writer thread cannot disturb the
        # walk; scoring every subject is ~8 µs each, so it runs off the event loop.
        states = dict(self._backend.states)
        scores = await asyncio.to_thread(_least_trusted, states, now, self.config, limit)
        if self._backend.stale():
            return sorted(
                (_distrusted(s) for s in scores),
                key=lambda s: (s.composite_score, s.subject_id),
            )
        return scores

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

        def mutate(current: SubjectState | None, now: _dt.datetime) -> Change:
            base = current or SubjectState(subject_id=subject_id, updated_at=now)
            state = apply_evidence(base, kind, applied, now, config)
            old = score_state(subject_id, current, now, config)
            new = score_state(subject_id, state, now, config)
            return Change(
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

        def mutate(current: SubjectState | None, now: _dt.datetime) -> Change:
            base = (
                SubjectState(subject_id=subject_id, updated_at=now)
                if current is None
                else decay_state(current, now, half_life)
            )
            state = replace(base, quarantined=True)
            old = score_state(subject_id, current, now, config)
            new = score_state(subject_id, state, now, config)
            return Change(
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

        def mutate(current: SubjectState | None, now: _dt.datetime) -> Change:
            if current is None or not current.quarantined:
                raise TrustError(f"subject {subject_id!r} is not quarantined; nothing to release")
            state = replace(decay_state(current, now, half_life), quarantined=False)
            old = score_state(subject_id, current, now, config)
            new = score_state(subject_id, state, now, config)
            return Change(
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

    # -- the transaction -----------------------------------------------------------------

    async def _change(self, subject_id: str, mutate: Mutation) -> TrustScore:
        """Run one change in the backend (see the module docstring for the steps)."""
        self._check_open()
        now = self._clock.now()
        # No await before the backend submits its work: close() queues behind us.
        return await self._backend.change(subject_id, mutate, now, self._audit)


def _distrusted(score: TrustScore) -> TrustScore:
    """``score`` as a stale snapshot reports it: composite 0.0, no confidence."""
    return replace(score, composite_score=0.0, level=TrustLevel.VERY_LOW, confidence=0.0)


def _least_trusted(
    states: Mapping[str, SubjectState], now: _dt.datetime, config: TrustConfig, limit: int
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
