"""The governance stores' PostgreSQL schema and its versioned migrations (ADR 0011).

Tables live in the connection's current schema, prefixed ``gov_`` because the ledger
(``ledger_``) and other Grace stores share the database:

* ``gov_meta(key, value)``: ``format = grace-governance`` and ``schema_version``;
* ``gov_principals``, ``gov_api_keys``: the principal registry (keys stored hashed);
* ``gov_counters(name, n)``: ``principals`` moves with every registry write, in the
  write's transaction, so an instance can tell whether its in-memory snapshot is current
  with one indexed read, even when it missed a notification;
* ``gov_approvals``, ``gov_votes``: approval requests and their votes.

Writers announce changes with ``pg_notify`` on :func:`channel_name` inside their
transaction (delivered only on commit). Migrations run under their own advisory lock, so
instances starting together apply each at most once; a newer schema is refused.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import structlog

from grace import _pgschema
from grace.errors import GovernanceError

__all__ = ["FORMAT", "SCHEMA_VERSION", "channel_name", "migrate"]

log = structlog.get_logger(__name__)

FORMAT: Final = "grace-governance"
_MIGRATE_LOCK: Final = 0x47524F30

_V1: Final = """
CREATE TABLE gov_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE gov_counters (name text PRIMARY KEY, n bigint NOT NULL);
INSERT INTO gov_counters (name, n) VALUES ('principals', 0);
CREATE TABLE gov_principals (
    id text PRIMARY KEY,
    kind text NOT NULL,
    roles jsonb NOT NULL,
    autonomy_tier integer NOT NULL,
    attributes jsonb NOT NULL,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);
CREATE TABLE gov_api_keys (
    key_id text PRIMARY KEY,
    principal_id text NOT NULL REFERENCES gov_principals(id),
    secret_sha256 bytea NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX gov_api_keys_principal ON gov_api_keys (principal_id, created_at);
CREATE TABLE gov_approvals (
    seq bigserial UNIQUE,
    id text PRIMARY KEY,
    request_hash text NOT NULL,
    requester text NOT NULL,
    action text NOT NULL,
    resource text NOT NULL,
    summary jsonb NOT NULL,
    quorum integer NOT NULL CHECK (quorum >= 1),
    state text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    decided_at timestamptz
);
CREATE INDEX gov_approvals_state ON gov_approvals (state, created_at DESC);
CREATE TABLE gov_votes (
    approval_id text NOT NULL REFERENCES gov_approvals(id),
    approver text NOT NULL,
    vote text NOT NULL,
    comment text NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (approval_id, approver)
);
"""

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = ((1, _V1),)
"""``(version, SQL)`` in order; a database at version ``v`` gets every later one applied."""

SCHEMA_VERSION: Final = MIGRATIONS[-1][0]


def channel_name(schema: str) -> str:
    """The NOTIFY channel of the governance stores in ``schema`` (channels are per database,
    so two schemas of one database must not hear each other)."""
    return f"grace_gov_{hashlib.sha256(schema.encode()).hexdigest()[:16]}"


async def migrate(conn: Any, location: str) -> str:
    """Create or upgrade the governance tables; return the current schema's name.

    ``conn`` is an asyncpg connection. Refuses a schema whose ``gov_meta`` is not Grace's
    governance format or records a newer version than this Grace knows.
    """
    return await _pgschema.migrate(
        conn,
        location,
        what="governance",
        meta_table="gov_meta",
        fmt=FORMAT,
        migrations=MIGRATIONS,
        lock_id=_MIGRATE_LOCK,
        error=GovernanceError,
    )
