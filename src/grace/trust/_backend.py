"""What the trust store asks of its storage: a snapshot to read and one atomic change.

The rules (validation, the math, what a change writes to the ledger) live once, in
:class:`grace.trust.store.TrustStore`; a backend only stores. A change is handed to the
backend as a :data:`Mutation` — a pure function from the subject's current state to a
:class:`Change` — which the backend runs inside its own transaction, after locking the
subject's row, so the base of every change is the committed latest state.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from grace.ledger.audit import AuditSink
from grace.ledger.entry import Receipt
from grace.trust.model import SubjectState, TrustScore

__all__ = ["SUBSYSTEM", "Change", "Mutation", "TrustBackend", "append_change"]

SUBSYSTEM: Final = "trust"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
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


Mutation = Callable[[SubjectState | None, _dt.datetime], Change]
"""``(current state or None, now) -> Change``; may raise TrustError to refuse."""


class TrustBackend(Protocol):
    """Storage of subject states (SQLite file or PostgreSQL shared by instances)."""

    location: str
    """Where the states live, for messages (no credentials)."""

    @property
    def states(self) -> Mapping[str, SubjectState]:
        """The in-memory snapshot reads are served from (never mutated in place by readers)."""
        ...

    def stale(self) -> bool:
        """True while the snapshot may miss other instances' changes beyond the bound."""
        ...

    async def change(
        self, subject_id: str, mutate: Mutation, now: _dt.datetime, audit: AuditSink | None
    ) -> TrustScore:
        """Lock the subject, run ``mutate``, write, append to ``audit``, commit; or raise
        TrustError with nothing changed. Must start its work before its first await."""
        ...

    async def close(self) -> None:
        """Finish the change in progress, then release the storage."""
        ...


async def append_change(audit: AuditSink, change: Change, previous_seq: int | None) -> Receipt:
    """Append the ledger entry describing ``change``; ``previous_seq`` links the subject's
    previous entry (so an entry whose change never committed is one nobody points back to)."""
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
