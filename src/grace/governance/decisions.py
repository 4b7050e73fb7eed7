"""A lookup index of decisions by id (the ledger stays the record of truth).

Each row holds the decision as JSON and the ledger seq that proves it; ``GET
/v1/decisions/{id}`` reads it here and callers can verify it against the ledger entry.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Final

import orjson

from grace.errors import GovernanceError
from grace.governance.model import ActionRequest, Decision

__all__ = ["DecisionIndex", "decision_json"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    receipt_seq INTEGER,
    body TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS decisions_principal ON decisions(principal);
"""


def decision_json(decision: Decision, request: ActionRequest | None = None) -> dict[str, Any]:
    """A decision as the HTTP API shows it."""
    body: dict[str, Any] = {
        "decision_id": decision.decision_id,
        "request_id": decision.request_id,
        "outcome": str(decision.outcome),
        "allowed": decision.allowed,
        "mode": str(decision.mode),
        "risk": str(decision.risk),
        "reasons": [
            {
                "message": r.message,
                "policy_id": r.policy_id,
                "principle": r.principle,
                "severity": r.severity,
            }
            for r in decision.reasons
        ],
        "observed": [r.policy_id or r.message for r in decision.observed],
        "trust_score": decision.trust_score,
        "approval_id": decision.approval_id,
        "receipt_seq": decision.receipt_seq,
        "error": decision.error,
        "decided_at": decision.decided_at.isoformat() if decision.decided_at else None,
    }
    if request is not None:
        body.update(
            {
                "principal": request.principal.id,
                "action": request.action,
                "resource": request.resource,
            }
        )
    return body


class DecisionIndex:
    """Decisions by id, in a SQLite table."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            # An index, not a record: the ledger holds every decision durably (with its
            # decision_id), so this connection need not fsync each row.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise GovernanceError(f"cannot open decision index {path}: {e}") from e
        self._lock = asyncio.Lock()

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    async def record(self, decision: Decision, request: ActionRequest) -> None:
        """Index a recorded decision."""
        body = orjson.dumps(decision_json(decision, request)).decode()
        async with self._lock:
            await asyncio.to_thread(
                self._conn.execute,
                "INSERT OR REPLACE INTO decisions VALUES (?,?,?,?,?)",
                (
                    decision.decision_id,
                    decision.request_id,
                    request.principal.id,
                    decision.receipt_seq,
                    body,
                ),
            )

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        """The decision as JSON, or None."""
        async with self._lock:
            row = await asyncio.to_thread(
                lambda: self._conn.execute(
                    "SELECT body FROM decisions WHERE decision_id = ?", (decision_id,)
                ).fetchone()
            )
        return None if row is None else dict(orjson.loads(row[0]))
