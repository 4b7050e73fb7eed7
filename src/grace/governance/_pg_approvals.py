"""Approvals in PostgreSQL, shared by every instance (ADR 0011).

Invariants (the rules themselves are :func:`~grace.governance.approvals.next_state`'s):

* a vote runs in one transaction holding the approval's row lock (``SELECT … FOR
  UPDATE``): two instances voting at once are serialised, so quorum and "each approver
  once" hold across instances;
* ``consume`` is one conditional ``UPDATE … WHERE state = 'approved' AND request_hash = …
  AND expires_at > now``: of any number of concurrent consumers on any instances, exactly
  one sees a row updated — an approval is single-use;
* every vote and consumption sends ``pg_notify`` (delivered at commit) with the approval
  id, so ``wait`` on another instance wakes at once; when the listener is down, waiters
  fall back to polling, and the listener reconnects on the next ``wait``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any, Final

import asyncpg
import orjson
import structlog

from grace.errors import ApprovalError
from grace.governance._pg_principals import describe_dsn
from grace.governance._pg_schema import channel_name, migrate
from grace.governance.approvals import Approval, ApprovalState, effective_state, next_state

__all__ = ["PostgresApprovals"]

log = structlog.get_logger(__name__)

_CONNECT_TIMEOUT_S: Final = 10.0
_DB_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_COLUMNS: Final = (
    "id, request_hash, requester, action, resource, summary::text, quorum, state, "
    "created_at, expires_at"
)


class PostgresApprovals:
    """The :class:`~grace.governance.approvals.ApprovalBackend` on PostgreSQL."""

    def __init__(self, dsn: str, pool: Any, channel: str) -> None:
        self._dsn = dsn
        self.location = describe_dsn(dsn)
        self._pool = pool
        self._channel = channel
        self._listener: Any = None
        self.on_change: Callable[[str], None] | None = None

    @classmethod
    async def open(cls, dsn: str) -> PostgresApprovals:
        """Connect, migrate the governance tables and start listening."""
        location = describe_dsn(dsn)
        pool: Any = None
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=4,
                timeout=_CONNECT_TIMEOUT_S,
                server_settings={"application_name": "grace-approvals"},
            )
            async with pool.acquire() as conn:
                schema = await migrate(conn, location)
            store = cls(dsn, pool, channel_name(schema))
            await store.listen()
        except BaseException as e:
            if pool is not None:
                pool.terminate()
            if isinstance(e, _DB_ERRORS):
                raise ApprovalError(f"cannot open approvals in {location}: {e}") from e
            raise
        return store

    async def listen(self) -> None:
        """(Re)connect the listener if it is down; a failure only leaves waiters polling."""
        if self._listener is not None and not self._listener.is_closed():
            return
        if self._listener is not None:
            self._listener.terminate()
            self._listener = None
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=_CONNECT_TIMEOUT_S,
                server_settings={"application_name": "grace-approvals-listen"},
            )
        except _DB_ERRORS as e:
            log.warning("approvals_listener_down", location=self.location, error=repr(e))
            return
        try:
            await conn.add_listener(self._channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        self._listener = conn

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith("approval:") and self.on_change is not None:
            self.on_change(payload.removeprefix("approval:"))

    def close(self) -> None:
        if self._listener is not None:
            self._listener.terminate()
        self._pool.terminate()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.terminate()
        await self._pool.close()

    async def insert(self, approval: Approval) -> None:
        a = approval
        try:
            await self._pool.execute(
                "INSERT INTO gov_approvals (id, request_hash, requester, action, resource, "
                "summary, quorum, state, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9, $10)",
                a.id,
                a.request_hash,
                a.requester,
                a.action,
                a.resource,
                orjson.dumps(a.summary).decode(),
                a.quorum,
                str(a.state),
                a.created_at,
                a.expires_at,
            )
        except _DB_ERRORS as e:
            raise ApprovalError(f"cannot store approval {a.id} in {self.location}: {e}") from e

    async def get(self, approval_id: str, now: _dt.datetime) -> Approval | None:
        try:
            async with self._pool.acquire() as conn:
                return await self._get(conn, approval_id, now)
        except _DB_ERRORS as e:
            raise ApprovalError(f"cannot read approval {approval_id}: {e}") from e

    @staticmethod
    async def _get(
        conn: Any, approval_id: str, now: _dt.datetime, *, lock: bool = False
    ) -> Approval | None:
        suffix = " FOR UPDATE" if lock else ""
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM gov_approvals WHERE id = $1{suffix}",  # noqa: S608 - constants
            approval_id,
        )
        if row is None:
            return None
        votes = await conn.fetch(
            "SELECT approver, vote FROM gov_votes WHERE approval_id = $1 ORDER BY at, approver",
            approval_id,
        )
        return Approval(
            id=row[0],
            request_hash=row[1],
            requester=row[2],
            action=row[3],
            resource=row[4],
            summary=orjson.loads(row[5]),
            quorum=row[6],
            state=effective_state(ApprovalState(row[7]), row[9], now),
            created_at=row[8],
            expires_at=row[9],
            approvers=tuple(v[0] for v in votes if v[1] == "approve"),
            rejected_by=next((v[0] for v in votes if v[1] == "reject"), None),
        )

    async def find_ids(
        self, state: ApprovalState | None, now: _dt.datetime, limit: int
    ) -> list[str]:
        live = [str(ApprovalState.PENDING), str(ApprovalState.APPROVED)]
        where, args = "", []
        if state is not None and str(state) in live:
            where, args = "WHERE state = $1 AND expires_at > $2", [str(state), now]
        elif state is ApprovalState.EXPIRED:
            where, args = "WHERE state = ANY($1::text[]) AND expires_at <= $2", [live, now]
        elif state is not None:
            where, args = "WHERE state = $1", [str(state)]
        sql = (
            f"SELECT id FROM gov_approvals {where} "  # noqa: S608 - fixed clauses
            f"ORDER BY created_at DESC, seq DESC LIMIT ${len(args) + 1}"
        )
        try:
            rows = await self._pool.fetch(sql, *args, limit)
        except _DB_ERRORS as e:
            raise ApprovalError(f"cannot list approvals in {self.location}: {e}") from e
        return [r[0] for r in rows]

    async def vote(
        self, approval_id: str, approver: str, vote: str, comment: str, now: _dt.datetime
    ) -> Approval:
        try:
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    current = await self._get(conn, approval_id, now, lock=True)
                    new_state = next_state(current, approval_id, approver, vote)
                    await conn.execute(
                        "INSERT INTO gov_votes (approval_id, approver, vote, comment, at) "
                        "VALUES ($1, $2, $3, $4, $5)",
                        approval_id,
                        approver,
                        vote,
                        comment,
                        now,
                    )
                    if new_state != ApprovalState.PENDING:
                        await conn.execute(
                            "UPDATE gov_approvals SET state = $2, decided_at = $3 WHERE id = $1",
                            approval_id,
                            str(new_state),
                            now,
                        )
                    await self._notify(conn, approval_id)
                decided = await self._get(conn, approval_id, now)
        except _DB_ERRORS as e:
            raise ApprovalError(f"cannot record the vote on {approval_id}: {e}") from e
        if decided is None:  # pragma: no cover - we just wrote it
            raise ApprovalError(f"approval {approval_id} vanished")
        return decided

    async def consume(self, approval_id: str, digest: str, now: _dt.datetime) -> bool:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                used = await conn.fetchval(
                    "UPDATE gov_approvals SET state = $4 WHERE id = $1 AND state = $5 "
                    "AND request_hash = $2 AND expires_at > $3 RETURNING true",
                    approval_id,
                    digest,
                    now,
                    str(ApprovalState.CONSUMED),
                    str(ApprovalState.APPROVED),
                )
                if used:
                    await self._notify(conn, approval_id)
        except _DB_ERRORS as e:
            raise ApprovalError(f"cannot use approval {approval_id}: {e}") from e
        return bool(used)

    async def _notify(self, conn: Any, approval_id: str) -> None:
        await conn.execute("SELECT pg_notify($1, $2)", self._channel, f"approval:{approval_id}")

    async def ensure_listening(self) -> None:
        """Called by waiters: reconnect a lost listener (missed changes are polled)."""
        if self._listener is None or self._listener.is_closed():
            await self.listen()
