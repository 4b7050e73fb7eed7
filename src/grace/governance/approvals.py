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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol

import orjson
import rfc8785

from grace.errors import ApprovalError
from grace.governance.model import ActionRequest
from grace.ledger.audit import AuditSink
from grace.types import Clock

__all__ = [
    "Approval",
    "ApprovalBackend",
    "ApprovalState",
    "ApprovalStore",
    "effective_state",
    "next_state",
    "request_hash",
]

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


def effective_state(
    state: ApprovalState, expires_at: _dt.datetime, now: _dt.datetime
) -> ApprovalState:
    """The stored state, or ``expired`` for a live one past its expiry."""
    live = state in (ApprovalState.PENDING, ApprovalState.APPROVED)
    return ApprovalState.EXPIRED if live and now >= expires_at else state


def next_state(
    approval: Approval | None, approval_id: str, approver: str, vote: str
) -> ApprovalState:
    """The state a vote moves ``approval`` to; :class:`ApprovalError` if it may not vote.

    Every backend calls this with the approval read under its write lock.
    """
    if approval is None:
        raise ApprovalError(f"no approval {approval_id}")
    if approval.state != ApprovalState.PENDING:
        raise ApprovalError(f"approval {approval_id} is {approval.state}, not pending")
    if approver == approval.requester:
        raise ApprovalError(f"{approver!r} requested {approval_id} and cannot approve it")
    if approver in approval.approvers or approver == approval.rejected_by:
        raise ApprovalError(f"{approver!r} already approved {approval_id}")
    if vote == "reject":
        return ApprovalState.REJECTED
    if len(approval.approvers) + 1 >= approval.quorum:
        return ApprovalState.APPROVED
    return ApprovalState.PENDING


class ApprovalBackend(Protocol):
    """Where approvals are stored: SQLite (one host) or PostgreSQL (``_pg_approvals``).

    ``vote`` and ``consume`` are atomic against every other writer of the same store.
    ``on_change`` is called (in the store's event loop) with an approval id whenever a
    writer elsewhere changed it, if the backend can tell.
    """

    on_change: Callable[[str], None] | None

    async def insert(self, approval: Approval) -> None: ...
    async def get(self, approval_id: str, now: _dt.datetime) -> Approval | None: ...
    async def find_ids(
        self, state: ApprovalState | None, now: _dt.datetime, limit: int
    ) -> list[str]: ...
    async def vote(
        self, approval_id: str, approver: str, vote: str, comment: str, now: _dt.datetime
    ) -> Approval: ...
    async def consume(self, approval_id: str, digest: str, now: _dt.datetime) -> bool: ...
    async def aclose(self) -> None: ...
    def close(self) -> None: ...
    async def ensure_listening(self) -> None:
        """Make sure changes by other writers reach ``on_change`` if the backend can."""
        ...


class _SqliteApprovals:
    """Approvals in a SQLite file (WAL); blocking calls run on a worker thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ApprovalError(f"cannot open approvals database {path}: {e}") from e
        self._lock = asyncio.Lock()
        self.on_change: Callable[[str], None] | None = None

    def close(self) -> None:
        self._conn.close()

    async def aclose(self) -> None:
        self.close()

    async def ensure_listening(self) -> None:
        """SQLite cannot announce changes: waiters poll."""

    async def _run(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    async def insert(self, approval: Approval) -> None:
        await self._run(self._insert, approval)

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

    async def get(self, approval_id: str, now: _dt.datetime) -> Approval | None:
        approval: Approval | None = await self._run(self._get, approval_id, now)
        return approval

    def _get(self, approval_id: str, now: _dt.datetime) -> Approval | None:
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
        expires = _parse(row[9])
        return Approval(
            id=row[0],
            request_hash=row[1],
            requester=row[2],
            action=row[3],
            resource=row[4],
            summary=orjson.loads(row[5]),
            quorum=row[6],
            state=effective_state(ApprovalState(row[7]), expires, now),
            created_at=_parse(row[8]),
            expires_at=expires,
            approvers=tuple(v[0] for v in votes if v[1] == "approve"),
            rejected_by=next((v[0] for v in votes if v[1] == "reject"), None),
        )

    async def find_ids(
        self, state: ApprovalState | None, now: _dt.datetime, limit: int
    ) -> list[str]:
        live = (ApprovalState.PENDING, ApprovalState.APPROVED)
        where, args = "", []
        if state in live:
            where, args = "WHERE state = ? AND expires_at > ?", [str(state), _ts(now)]
        elif state is ApprovalState.EXPIRED:
            where, args = "WHERE state IN (?, ?) AND expires_at <= ?", [*map(str, live), _ts(now)]
        elif state is not None:
            where, args = "WHERE state = ?", [str(state)]
        sql = f"SELECT id FROM approvals {where} ORDER BY created_at DESC, rowid DESC LIMIT ?"  # noqa: S608 - fixed clauses
        ids: list[str] = await self._run(
            lambda: [r[0] for r in self._conn.execute(sql, [*args, limit])]
        )
        return ids

    async def vote(
        self, approval_id: str, approver: str, vote: str, comment: str, now: _dt.datetime
    ) -> Approval:
        result: Approval = await self._run(
            self._vote_sync, approval_id, approver, vote, comment, now
        )
        return result

    def _vote_sync(
        self, approval_id: str, approver: str, vote: str, comment: str, now: _dt.datetime
    ) -> Approval:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            new_state = next_state(self._get(approval_id, now), approval_id, approver, vote)
            c.execute(
                "INSERT INTO votes VALUES (?,?,?,?,?)",
                (approval_id, approver, vote, comment, _ts(now)),
            )
            if new_state != ApprovalState.PENDING:
                c.execute(
                    "UPDATE approvals SET state = ?, decided_at = ? WHERE id = ?",
                    (new_state, _ts(now), approval_id),
                )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        decided = self._get(approval_id, now)
        if decided is None:  # pragma: no cover - we just wrote it
            raise ApprovalError(f"approval {approval_id} vanished")
        return decided

    async def consume(self, approval_id: str, digest: str, now: _dt.datetime) -> bool:
        used: bool = await self._run(self._consume_sync, approval_id, digest, now)
        return used

    def _consume_sync(self, approval_id: str, digest: str, now: _dt.datetime) -> bool:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            approval = self._get(approval_id, now)
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


class ApprovalStore:
    """Approvals with their rules, over a SQLite file (``ApprovalStore(path, …)``) or
    PostgreSQL shared by every instance (:meth:`open_postgres`)."""

    def __init__(
        self, path: Path, *, clock: Clock, ttl_s: float = 3600.0, audit: AuditSink | None = None
    ) -> None:
        self._setup(_SqliteApprovals(path), clock=clock, ttl_s=ttl_s, audit=audit)
        self.path: Path | None = path

    def _setup(
        self, backend: ApprovalBackend, *, clock: Clock, ttl_s: float, audit: AuditSink | None
    ) -> None:
        self.path = None
        self._backend = backend
        self._clock = clock
        self._audit = audit
        self._ttl = _dt.timedelta(seconds=ttl_s)
        self._changed: dict[str, asyncio.Event] = {}
        backend.on_change = self._signal

    @classmethod
    async def open_postgres(
        cls,
        dsn: str,
        *,
        clock: Clock,
        ttl_s: float = 3600.0,
        audit: AuditSink | None = None,
    ) -> ApprovalStore:
        """Approvals in PostgreSQL at ``dsn`` (tables migrated on open), shared by every
        instance: a vote on one wakes waiters on all (LISTEN/NOTIFY)."""
        from grace.governance._pg_approvals import PostgresApprovals

        backend = await PostgresApprovals.open(dsn)
        store = cls.__new__(cls)
        store._setup(backend, clock=clock, ttl_s=ttl_s, audit=audit)
        return store

    def close(self) -> None:
        """Close the database (abruptly for PostgreSQL: prefer :meth:`aclose` there)."""
        self._backend.close()

    async def aclose(self) -> None:
        """Close the database."""
        await self._backend.aclose()

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
        await self._backend.insert(approval)
        await self._record(approval.requester, "approval.request", approval, "pending")
        return approval

    async def get(self, approval_id: str) -> Approval | None:
        """The approval with its votes (expired ones read as ``expired``)."""
        return await self._backend.get(approval_id, self._clock.now())

    async def find(
        self, *, state: ApprovalState | None = ApprovalState.PENDING, limit: int = 100
    ) -> list[Approval]:
        """Approvals in ``state``, newest first (pending ones by default).

        The state filter runs in SQL; ``expired`` is derived from the expiry time, so a
        stored pending/approved row past it counts as expired, not as pending/approved.
        """
        ids = await self._backend.find_ids(state, self._clock.now(), limit)
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
        result = await self._backend.vote(approval_id, approver, vote, comment, self._clock.now())
        self._signal(approval_id)
        await self._record(approver, f"approval.{vote}", result, str(result.state), comment=comment)
        return result

    async def consume(self, approval_id: str, request: ActionRequest) -> bool:
        """Use an approved approval for ``request``, once. False if it does not apply."""
        digest = request_hash(request)
        used = await self._backend.consume(approval_id, digest, self._clock.now())
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

        Decisions made in this process wake the waiter at once, and so do decisions made on
        another instance sharing PostgreSQL (NOTIFY); decisions made elsewhere (the CLI on
        SQLite, or while the listener reconnects) are seen by polling every ``poll_s``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._backend.ensure_listening()
        while True:
            # Registered before reading, so a change between the read and the wait wakes it.
            event = self._changed.setdefault(approval_id, asyncio.Event())
            approval = await self.get(approval_id)
            if approval is None:
                raise ApprovalError(f"no approval {approval_id}")
            remaining = deadline - loop.time()
            if approval.state != ApprovalState.PENDING or remaining <= 0:
                return approval
            try:
                async with asyncio.timeout(min(poll_s, remaining)):
                    await event.wait()
            except TimeoutError:
                pass
