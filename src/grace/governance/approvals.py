"""Human approvals: requests bound to one exact action, decided by distinct approvers.

Invariants (a state machine per approval: ``pending`` → ``approved`` | ``rejected`` |
``expired``; ``approved`` → ``consumed``):

* an approval is bound to the SHA-256 of the canonical (RFC 8785) request — principal,
  action, resource and context — so it cannot be reused for a different request;
* the requester can never approve their own request; each approver counts once;
* ``quorum`` distinct approvals move it to ``approved`` (1 for ``requires_approval``,
  the configured parliament size for ``requires_parliament``); one rejection rejects;
* ``consume`` succeeds once, only for an approved, unexpired approval and the same
  request hash: an approval is single-use.

Stored in ``<data_dir>/approvals.db`` (SQLite, WAL), so approvals survive restarts and
a CLI in another process can decide them while the server waits.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import orjson
import rfc8785

from grace.errors import ApprovalError
from grace.governance.model import ActionRequest
from grace.ledger.audit import AuditSink
from grace.types import Clock

__all__ = ["Approval", "ApprovalState", "ApprovalStore", "request_hash"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    requester TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    summary TEXT NOT NULL,
    quorum INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    decided_at TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS votes (
    approval_id TEXT NOT NULL REFERENCES approvals(id),
    approver TEXT NOT NULL,
    vote TEXT NOT NULL,
    comment TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (approval_id, approver)
) STRICT;
"""


class ApprovalState(StrEnum):
    """Where an approval request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CONSUMED = "consumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """One approval request and the votes on it."""

    id: str
    request_hash: str
    requester: str
    action: str
    resource: str
    summary: Mapping[str, Any]
    quorum: int
    state: ApprovalState
    created_at: _dt.datetime
    expires_at: _dt.datetime
    approvers: tuple[str, ...] = ()
    rejected_by: str | None = None


def request_hash(request: ActionRequest) -> str:
    """SHA-256 of the canonical request: what an approval is bound to."""
    body: dict[str, Any] = {
        "principal": request.principal.id,
        "action": request.action,
        "resource": request.resource,
        "context": dict(request.context),
    }
    try:
        canonical = rfc8785.dumps(body)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as e:
        raise ApprovalError(f"request context cannot be canonicalised for approval: {e}") from e
    return hashlib.sha256(canonical).hexdigest()


def _ts(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).isoformat()


def _parse(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text)


class ApprovalStore:
    """SQLite-backed approvals; blocking calls run on a worker thread."""

    def __init__(
        self, path: Path, *, clock: Clock, ttl_s: float = 3600.0, audit: AuditSink | None = None
    ) -> None:
        self.path = path
        self._clock = clock
        self._audit = audit
        self._ttl = _dt.timedelta(seconds=ttl_s)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ApprovalError(f"cannot open approvals database {path}: {e}") from e
        self._lock = asyncio.Lock()
        self._changed: dict[str, asyncio.Event] = {}

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    async def _run(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    # -- creating and reading ------------------------------------------------------------

    async def create(
        self, request: ActionRequest, *, quorum: int, summary: Mapping[str, Any]
    ) -> Approval:
        """Open an approval request for ``request`` needing ``quorum`` distinct approvers."""
        if quorum < 1:
            raise ApprovalError(f"quorum must be at least 1, got {quorum}")
        now = self._clock.now()
        approval = Approval(
            id=f"apr_{secrets.token_urlsafe(12)}",
            request_hash=request_hash(request),
            requester=request.principal.id,
            action=request.action,
            resource=request.resource,
            summary=dict(summary),
            quorum=quorum,
            state=ApprovalState.PENDING,
            created_at=now,
            expires_at=now + self._ttl,
        )
        await self._run(self._insert, approval)
        await self._record(approval.requester, "approval.request", approval, "pending")
        return approval

    def _insert(self, a: Approval) -> None:
        self._conn.execute(
            "INSERT INTO approvals VALUES (?,?,?,?,?,?,?,?,?,?,NULL)",
            (
                a.id,
                a.request_hash,
                a.requester,
                a.action,
                a.resource,
                orjson.dumps(a.summary).decode(),
                a.quorum,
                a.state,
                _ts(a.created_at),
                _ts(a.expires_at),
            ),
        )

    async def get(self, approval_id: str) -> Approval | None:
        """The approval with its votes (expired ones read as ``expired``)."""
        approval: Approval | None = await self._run(self._get, approval_id)
        return approval

    def _get(self, approval_id: str) -> Approval | None:
        row = self._conn.execute(
            "SELECT id, request_hash, requester, action, resource, summary, quorum, state, "
            "created_at, expires_at FROM approvals WHERE id = ?",
            (approval_id,),
        ).fetchone()
        if row is None:
            return None
        votes = self._conn.execute(
            "SELECT approver, vote FROM votes WHERE approval_id = ? ORDER BY at, approver",
            (approval_id,),
        ).fetchall()
        state = ApprovalState(row[7])
        expires = _parse(row[9])
        if (
            state in (ApprovalState.PENDING, ApprovalState.APPROVED)
            and self._clock.now() >= expires
        ):
            state = ApprovalState.EXPIRED
        return Approval(
            id=row[0],
            request_hash=row[1],
            requester=row[2],
            action=row[3],
            resource=row[4],
            summary=orjson.loads(row[5]),
            quorum=row[6],
            state=state,
            created_at=_parse(row[8]),
            expires_at=expires,
            approvers=tuple(v[0] for v in votes if v[1] == "approve"),
            rejected_by=next((v[0] for v in votes if v[1] == "reject"), None),
        )

    async def find(
        self, *, state: ApprovalState | None = ApprovalState.PENDING, limit: int = 100
    ) -> list[Approval]:
        """Approvals in ``state``, newest first (pending ones by default).

        The state filter runs in SQL; ``expired`` is derived from the expiry time, so a
        stored pending/approved row past it counts as expired, not as pending/approved.
        """
        now = _ts(self._clock.now())
        live = (ApprovalState.PENDING, ApprovalState.APPROVED)
        where, args = "", []
        if state in live:
            where, args = "WHERE state = ? AND expires_at > ?", [str(state), now]
        elif state is ApprovalState.EXPIRED:
            where, args = "WHERE state IN (?, ?) AND expires_at <= ?", [*map(str, live), now]
        elif state is not None:
            where, args = "WHERE state = ?", [str(state)]
        sql = f"SELECT id FROM approvals {where} ORDER BY created_at DESC, rowid DESC LIMIT ?"  # noqa: S608 - fixed clauses
        ids: list[str] = await self._run(
            lambda: [r[0] for r in self._conn.execute(sql, [*args, limit])]
        )
        out: list[Approval] = []
        for approval_id in ids:
            approval = await self.get(approval_id)
            if approval is not None:
                out.append(approval)
        return out

    # -- deciding ------------------------------------------------------------------------

    async def approve(self, approval_id: str, approver: str, *, comment: str = "") -> Approval:
        """Record an approval vote; :class:`ApprovalError` if not allowed."""
        return await self._vote(approval_id, approver, "approve", comment)

    async def reject(self, approval_id: str, approver: str, *, comment: str = "") -> Approval:
        """Record a rejection: the request is rejected."""
        return await self._vote(approval_id, approver, "reject", comment)

    async def _vote(self, approval_id: str, approver: str, vote: str, comment: str) -> Approval:
        result: Approval = await self._run(self._vote_sync, approval_id, approver, vote, comment)
        self._signal(approval_id)
        await self._record(approver, f"approval.{vote}", result, str(result.state), comment=comment)
        return result

    def _vote_sync(self, approval_id: str, approver: str, vote: str, comment: str) -> Approval:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            approval = self._get(approval_id)
            if approval is None:
                raise ApprovalError(f"no approval {approval_id}")
            if approval.state != ApprovalState.PENDING:
                raise ApprovalError(f"approval {approval_id} is {approval.state}, not pending")
            if approver == approval.requester:
                raise ApprovalError(f"{approver!r} requested {approval_id} and cannot approve it")
            if approver in approval.approvers:
                raise ApprovalError(f"{approver!r} already approved {approval_id}")
            now = self._clock.now()
            c.execute(
                "INSERT INTO votes VALUES (?,?,?,?,?)",
                (approval_id, approver, vote, comment, _ts(now)),
            )
            if vote == "reject":
                new_state = ApprovalState.REJECTED
            elif len(approval.approvers) + 1 >= approval.quorum:
                new_state = ApprovalState.APPROVED
            else:
                new_state = ApprovalState.PENDING
            if new_state != ApprovalState.PENDING:
                c.execute(
                    "UPDATE approvals SET state = ?, decided_at = ? WHERE id = ?",
                    (new_state, _ts(now), approval_id),
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        decided = self._get(approval_id)
        if decided is None:  # pragma: no cover - we just wrote it
            raise ApprovalError(f"approval {approval_id} vanished")
        return decided

    async def consume(self, approval_id: str, request: ActionRequest) -> bool:
        """Use an approved approval for ``request``, once. False if it does not apply."""
        digest = request_hash(request)
        used: bool = await self._run(self._consume_sync, approval_id, digest)
        if used:
            self._signal(approval_id)
            approval = await self.get(approval_id)
            if approval is not None:
                await self._record(request.principal.id, "approval.use", approval, "consumed")
        return used

    async def _record(
        self, actor: str, action: str, approval: Approval, result: str, *, comment: str = ""
    ) -> None:
        """Put an approval step in the ledger (a failure propagates: nothing unrecorded)."""
        if self._audit is None:
            return
        await self._audit.append(
            subsystem="governance",
            actor=actor,
            action=action,
            resource=approval.id,
            result=result,
            payload={
                "approval_id": approval.id,
                "request_hash": approval.request_hash,
                "requester": approval.requester,
                "requested_action": approval.action,
                "requested_resource": approval.resource,
                "quorum": approval.quorum,
                "approvers": list(approval.approvers),
                "comment": comment,
            },
        )

    def _consume_sync(self, approval_id: str, digest: str) -> bool:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            approval = self._get(approval_id)
            ok = (
                approval is not None
                and approval.state == ApprovalState.APPROVED
                and approval.request_hash == digest
            )
            if ok:
                c.execute(
                    "UPDATE approvals SET state = ? WHERE id = ? AND state = ?",
                    (ApprovalState.CONSUMED, approval_id, ApprovalState.APPROVED),
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return ok

    # -- waiting -------------------------------------------------------------------------

    def _signal(self, approval_id: str) -> None:
        event = self._changed.pop(approval_id, None)
        if event is not None:
            event.set()

    async def wait(
        self,
        approval_id: str,
        timeout: float,  # noqa: ASYNC109 - the seed's wait_for_approval(id, timeout) API
        *,
        poll_s: float = 0.5,
    ) -> Approval:
        """Wait until the approval leaves ``pending`` (or ``timeout`` seconds pass).

        Decisions made in this process wake the waiter at once; decisions made elsewhere
        (the CLI, another instance) are seen by polling every ``poll_s`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            approval = await self.get(approval_id)
            if approval is None:
                raise ApprovalError(f"no approval {approval_id}")
            remaining = deadline - loop.time()
            if approval.state != ApprovalState.PENDING or remaining <= 0:
                return approval
            event = self._changed.setdefault(approval_id, asyncio.Event())
            try:
                async with asyncio.timeout(min(poll_s, remaining)):
                    await event.wait()
            except TimeoutError:
                pass
