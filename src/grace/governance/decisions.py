"""A lookup index of decisions by id (the ledger stays the record of truth).

Each row holds the decision as JSON and the ledger seq that proves it; ``GET
/v1/decisions/{id}`` reads it here and callers can verify it against the ledger entry.

The index is a per-instance cache of the ledger (ADR 0011): with several instances on one
PostgreSQL ledger, each keeps its own SQLite index, fed by its own decisions and by
:meth:`DecisionIndex.catch_up` from the shared ledger. ``catch_up`` scans from its own
watermark (the ledger seq it last scanned to), not from the newest indexed row: another
instance's decisions sit at lower seqs than this one's newest. An index given the ledger
catches up on a miss, so a decision made on instance A is found on instance B.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Final

import orjson
import structlog

from grace.errors import GovernanceError
from grace.governance.model import ActionRequest, Decision
from grace.ledger import Entry, Ledger

__all__ = ["DecisionIndex", "decision_json"]

log = structlog.get_logger(__name__)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    receipt_seq INTEGER,
    body TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS decisions_principal ON decisions(principal);
CREATE TABLE IF NOT EXISTS decisions_scanned (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ledger_seq INTEGER NOT NULL
) STRICT;
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
    """Decisions by id, in a SQLite table, written behind the decision path.

    ``record`` only queues the row (the decision is already durable in the ledger); one
    background flush writes everything queued in one transaction, so a burst of decisions
    costs one commit, not one per decision. ``get`` sees queued rows too. After a crash the
    rows not yet flushed are rebuilt from the ledger by :meth:`catch_up`.
    """

    def __init__(self, path: Path, *, ledger: Ledger | None = None) -> None:
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
        self._pending: dict[str, tuple[str, str, str, int | None, str]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._ledger = ledger
        self._catching_up = asyncio.Lock()

    def close(self) -> None:
        """Close the database (call :meth:`flush` first to keep queued rows)."""
        self._conn.close()

    async def aclose(self) -> None:
        """Write what is queued, then close."""
        await self.flush()
        self.close()

    async def record(self, decision: Decision, request: ActionRequest) -> None:
        """Queue a recorded decision for the index; the background flush writes it."""
        self._pending[decision.decision_id] = (
            decision.decision_id,
            decision.request_id,
            request.principal.id,
            decision.receipt_seq,
            orjson.dumps(decision_json(decision, request)).decode(),
        )
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0)  # let the rest of this burst queue up first
        try:
            await self.flush()
        except Exception as e:  # noqa: BLE001 - catch_up rebuilds unflushed rows from the ledger
            log.warning("decision_index_flush_failed", error=repr(e))

    async def flush(self) -> None:
        """Write every queued row now (one transaction)."""
        async with self._lock:
            while self._pending:
                rows = list(self._pending.values())
                await asyncio.to_thread(self._write, rows)
                for row in rows:
                    if self._pending.get(row[0]) is row:
                        del self._pending[row[0]]

    def _write(self, rows: list[tuple[str, str, str, int | None, str]]) -> None:
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR REPLACE INTO decisions VALUES (?,?,?,?,?)", rows)

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        """The decision as JSON, or None.

        With a ledger, a miss first indexes what the ledger gained since the last scan
        (decisions made by other instances), then looks again.
        """
        found = await self._lookup(decision_id)
        if found is None and self._ledger is not None:
            async with self._catching_up:
                found = await self._lookup(decision_id)  # a concurrent miss may have caught up
                if found is None and await self.catch_up(self._ledger):
                    found = await self._lookup(decision_id)
        return found

    async def _lookup(self, decision_id: str) -> dict[str, Any] | None:
        queued = self._pending.get(decision_id)
        if queued is not None:
            return dict(orjson.loads(queued[4]))
        async with self._lock:
            row = await asyncio.to_thread(
                lambda: self._conn.execute(
                    "SELECT body FROM decisions WHERE decision_id = ?", (decision_id,)
                ).fetchone()
            )
        return None if row is None else dict(orjson.loads(row[0]))

    async def catch_up(self, ledger: Ledger, *, page: int = 1000) -> int:
        """Index the ledger's decisions after the last scanned seq; returns how many rows.

        The index trails the ledger by at most one unflushed batch (and, with several
        instances, by the others' decisions); this closes the gap. Rebuilt rows carry what
        the ledger entry holds (reasons as messages with the violated policy ids) and
        ``"rebuilt_from_ledger": true``; a row this instance recorded itself is kept.
        """
        async with self._lock:
            after = await asyncio.to_thread(self._scanned)
        count = 0
        while True:
            entries = await ledger.query(after=after, subsystem="governance", limit=page)
            rows = [r for r in map(_row_from_entry, entries.entries) if r is not None]
            last = entries.entries[-1].seq if entries.entries else after
            async with self._lock:
                await asyncio.to_thread(self._write_scanned, rows, max(after, last))
            count += len(rows)
            if entries.next_after is None:
                return count
            after = entries.next_after

    def _scanned(self) -> int:
        row = self._conn.execute("SELECT ledger_seq FROM decisions_scanned").fetchone()
        if row is None:
            # An index from before the watermark: one instance wrote every row in seq order.
            row = self._conn.execute("SELECT MAX(receipt_seq) FROM decisions").fetchone()
        return int(row[0] or 0)

    def _write_scanned(self, rows: list[tuple[str, str, str, int | None, str]], seq: int) -> None:
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR IGNORE INTO decisions VALUES (?,?,?,?,?)", rows)
            self._conn.execute(
                "INSERT INTO decisions_scanned (id, ledger_seq) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET ledger_seq = MAX(ledger_seq, excluded.ledger_seq)",
                (seq,),
            )


def _row_from_entry(entry: Entry) -> tuple[str, str, str, int | None, str] | None:
    payload = entry.payload
    decision_id = payload.get("decision_id")
    if payload.get("event") != "decision" or not isinstance(decision_id, str):
        return None
    violated = payload.get("violated_policies") or []
    body = {
        "decision_id": decision_id,
        "request_id": payload.get("request_id"),
        "outcome": entry.result,
        "allowed": payload.get("allowed"),
        "mode": payload.get("mode"),
        "risk": payload.get("risk_level"),
        "reasons": [
            {"message": m, "policy_id": None, "principle": None, "severity": None}
            for m in payload.get("reasons") or []
        ],
        "violated_policies": violated,
        "observed": payload.get("observed") or [],
        "trust_score": payload.get("trust_score"),
        "approval_id": payload.get("approval_id"),
        "receipt_seq": entry.seq,
        "error": payload.get("error"),
        "decided_at": entry.timestamp.isoformat(),
        "principal": entry.actor,
        "action": entry.action,
        "resource": entry.resource,
        "rebuilt_from_ledger": True,
    }
    return (
        decision_id,
        str(payload.get("request_id") or ""),
        entry.actor,
        entry.seq,
        orjson.dumps(body).decode(),
    )
