"""The ledger's PostgreSQL schema, its versioned migrations, and the checks at open.

Tables live in the connection's current schema (the first existing schema on its
``search_path``), prefixed ``ledger_`` because other Grace stores may share the database:

* ``ledger_meta(key, value)``: ``format = grace-ledger``, ``schema_version``, ``origin`` and
  ``vkey`` (the verifier key of the Ed25519 key every writing instance must sign with).
* ``ledger_entries(seq, entry, entry_hash, nodes, subsystem, actor, action, ts)``: the
  same bytes, leaf hash and interior Merkle nodes as the SQLite store (``_store``), plus the
  query columns. PostgreSQL can only index generated columns by parsing the JSON on every
  insert (four times, on the one server every instance shares), so the writer stores the
  values it spliced into the bytes, and verification checks each row's columns against its
  bytes. Text columns are ``bytea`` (UTF-8) because PostgreSQL text cannot hold NUL.
* ``ledger_checkpoints(tree_size, created_at, note)``: signed notes.
* ``ledger_batches(batch_id, first_seq, entry_count, created_at)``: one row per committed
  batch, written in the batch's transaction, so a writer whose connection failed during
  COMMIT can tell whether its batch is stored before retrying (ADR 0010).

``ledger_begin(batch, count, size, hash, checkpoint)`` is the sequencer: it takes the
transaction-scoped advisory lock, then (in fresh snapshots, being VOLATILE) reads the head
and the newest checkpoint, and whether ``batch`` is already stored, recording it if not.
When the head is not the caller's ``size``/``hash`` (another instance appended), it also
returns the tree's edge — the O(log n) stored subtree hashes a writer needs to continue
the tree — and, when the newest checkpoint is not the caller's, its note. One round trip
under the lock, whoever wrote last; every writer of the database queues on the same lock.

Migrations run under their own advisory lock, so instances starting together apply each
at most once; a database written by a newer Grace is refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

import structlog

from grace.errors import KeyFileError, LedgerError, LedgerFormatError
from grace.ledger.checkpoint import (
    NoteSigner,
    NoteVerifier,
    load_or_create_signing_key,
    load_verifier,
)

__all__ = [
    "FORMAT",
    "MIGRATE_LOCK",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SEQUENCER_LOCK",
    "check_read_only",
    "migrate",
    "read_meta",
]

log = structlog.get_logger(__name__)

FORMAT: Final = "grace-ledger"
SEQUENCER_LOCK: Final = 0x47524C31
"""First key of the sequencer's advisory lock (the second is the schema name's hash)."""
MIGRATE_LOCK: Final = 0x47524C30

_V1: Final = f"""
CREATE TABLE ledger_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE ledger_entries (
    seq bigint PRIMARY KEY,
    entry bytea NOT NULL,
    entry_hash bytea NOT NULL,
    nodes bytea NOT NULL,
    subsystem bytea NOT NULL,
    actor bytea NOT NULL,
    action bytea NOT NULL,
    ts text COLLATE "C" NOT NULL
);
CREATE INDEX ledger_entries_subsystem ON ledger_entries (subsystem, seq);
CREATE INDEX ledger_entries_actor ON ledger_entries (actor, seq);
CREATE INDEX ledger_entries_action ON ledger_entries (action, seq);
CREATE INDEX ledger_entries_ts ON ledger_entries (ts);
CREATE TABLE ledger_checkpoints (
    tree_size bigint PRIMARY KEY,
    created_at text NOT NULL,
    note text NOT NULL
);
CREATE TABLE ledger_batches (
    batch_id uuid PRIMARY KEY,
    first_seq bigint NOT NULL,
    entry_count integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION ledger_begin(
    p_batch uuid, p_count integer, p_size bigint, p_hash bytea, p_checkpoint bigint
)
RETURNS TABLE (
    head_size bigint, head_hash bytea, head_ts text, head_checkpoint bigint,
    batch_first bigint, frontier bytea[], checkpoint_note text
)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    v_size bigint;
    v_hash bytea;
    v_ts text;
    v_cp bigint;
    v_done bigint;
    v_frontier bytea[];
    v_note text;
    v_start bigint := 0;
    v_part bytea;
BEGIN
    PERFORM pg_advisory_xact_lock({SEQUENCER_LOCK}, hashtext(current_schema()));
    SELECT e.seq, e.entry_hash, e.ts INTO v_size, v_hash, v_ts
        FROM ledger_entries e ORDER BY e.seq DESC LIMIT 1;
    v_size := COALESCE(v_size, 0);
    SELECT c.tree_size, c.note INTO v_cp, v_note
        FROM ledger_checkpoints c ORDER BY c.tree_size DESC LIMIT 1;
    v_cp := COALESCE(v_cp, 0);
    IF v_cp = p_checkpoint THEN
        v_note := NULL;
    END IF;
    IF v_size <> p_size OR v_hash IS DISTINCT FROM p_hash THEN
        -- The tree's edge: perfect_parts(0, size), located as _tree.node_location says.
        v_frontier := ARRAY[]::bytea[];
        FOR v_level IN REVERSE 62..0 LOOP
            IF (v_size >> v_level) & 1 = 1 THEN
                IF v_level = 0 THEN
                    SELECT e.entry_hash INTO v_part FROM ledger_entries e
                        WHERE e.seq = v_start + 1;
                ELSE
                    SELECT substring(e.nodes FROM (v_level - 1) * 32 + 1 FOR 32) INTO v_part
                        FROM ledger_entries e WHERE e.seq = v_start + (1::bigint << v_level);
                END IF;
                v_frontier := v_frontier || v_part;
                v_start := v_start + (1::bigint << v_level);
            END IF;
        END LOOP;
    END IF;
    IF p_batch IS NOT NULL THEN
        SELECT b.first_seq INTO v_done FROM ledger_batches b WHERE b.batch_id = p_batch;
        IF v_done IS NULL THEN
            INSERT INTO ledger_batches (batch_id, first_seq, entry_count)
                VALUES (p_batch, v_size + 1, p_count);
        END IF;
    END IF;
    RETURN QUERY SELECT v_size, v_hash, v_ts, v_cp, v_done, v_frontier, v_note;
END
$$;
"""  # noqa: S608 - constants only

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = ((1, _V1),)
"""``(version, SQL)`` in order; a database at version ``v`` gets every later one applied."""

SCHEMA_VERSION: Final = MIGRATIONS[-1][0]


async def read_meta(conn: Any, location: str) -> dict[str, str] | None:
    """The ledger's meta rows, None for a schema without a ledger; refuses anything else.

    ``conn`` is an asyncpg connection.
    """
    exists = await conn.fetchval("SELECT to_regclass('ledger_meta') IS NOT NULL")
    if not exists:
        return None
    meta = {r["key"]: r["value"] for r in await conn.fetch("SELECT key, value FROM ledger_meta")}
    if meta.get("format") != FORMAT:
        raise LedgerFormatError(
            f"{location} has a ledger_meta table that is not a Grace ledger's "
            f"(format {meta.get('format')!r})"
        )
    version = meta.get("schema_version", "")
    if not version.isdigit():
        raise LedgerFormatError(f"{location} records ledger schema version {version!r}")
    if int(version) > SCHEMA_VERSION:
        raise LedgerFormatError(
            f"{location} has ledger schema version {version}, written by a newer Grace; this "
            f"Grace knows versions up to {SCHEMA_VERSION} and will not touch it"
        )
    return meta


def _first_key(key_file: Path, origin: str) -> NoteSigner:
    """The key of a new ledger: the file's if it exists, else a new one (dir and file private)."""
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise KeyFileError(f"cannot create the directory of {key_file}: {e.strerror}") from e
    return load_or_create_signing_key(key_file, origin)


def _existing_key(key_file: Path, origin: str, location: str, vkey: str) -> NoteSigner:
    if not key_file.exists():
        raise KeyFileError(
            f"no signing key {key_file}: the ledger in {location} is signed by {vkey}; every "
            "instance writing to it needs a copy of that key file (mode 0600)"
        )
    return load_or_create_signing_key(key_file, origin)


async def migrate(
    conn: Any, location: str, key_file: Path, origin_wanted: str
) -> tuple[str, NoteSigner]:
    """Create or upgrade the schema under the migration lock; return origin and signing key.

    A new ledger takes the key in ``key_file`` (created if missing) and records its vkey;
    an existing one must be opened with its origin and exactly that key.
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", MIGRATE_LOCK
        )
        meta = await read_meta(conn, location)
        if meta is None:
            signer = await asyncio.to_thread(_first_key, key_file, origin_wanted)
            for _, sql in MIGRATIONS:
                await conn.execute(sql)
            await conn.executemany(
                "INSERT INTO ledger_meta (key, value) VALUES ($1, $2)",
                [
                    ("format", FORMAT),
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("origin", origin_wanted),
                    ("vkey", signer.verifier.vkey),
                ],
            )
            log.info("ledger_postgres_created", location=location, origin=origin_wanted)
            return origin_wanted, signer
        origin = meta["origin"]
        if origin != origin_wanted:
            raise LedgerFormatError(
                f"the ledger in {location} is the log {origin!r}; settings name {origin_wanted!r}"
            )
        vkey = meta.get("vkey", "")
        signer = await asyncio.to_thread(_existing_key, key_file, origin, location, vkey)
        if signer.verifier.vkey != vkey:
            raise KeyFileError(
                f"the key in {key_file} ({signer.verifier.vkey}) is not the key the ledger in "
                f"{location} is signed with ({vkey}); every instance must use the same key file"
            )
        version = int(meta["schema_version"])
        for number, sql in MIGRATIONS:
            if number > version:
                await conn.execute(sql)
                log.info("ledger_postgres_migrated", location=location, schema_version=number)
        if version < SCHEMA_VERSION:
            await conn.execute(
                "UPDATE ledger_meta SET value = $1 WHERE key = 'schema_version'",
                str(SCHEMA_VERSION),
            )
        return origin, signer


def _key_for_reading(key_file: Path, origin: str) -> NoteSigner:
    if not key_file.exists():
        raise LedgerError(f"no signing key {key_file}; pass the ledger's public key")
    return load_or_create_signing_key(key_file, origin)


async def check_read_only(
    conn: Any, location: str, key_file: Path, public_key: str | None
) -> tuple[str, NoteVerifier]:
    """Check a ledger exists at this version; return its origin and how to verify it.

    The verifier comes from the key file or the given public key, never from the key the
    database itself names (whoever can write the database could name their own).
    """
    meta = await read_meta(conn, location)
    if meta is None:
        raise LedgerError(f"no ledger in {location} (no ledger_meta table in its schema)")
    if int(meta["schema_version"]) != SCHEMA_VERSION:
        raise LedgerFormatError(
            f"{location} has ledger schema version {meta['schema_version']}; open it writable "
            f"once to migrate it to version {SCHEMA_VERSION}"
        )
    origin = meta["origin"]
    if public_key:
        return origin, load_verifier(public_key, name=origin)
    signer = await asyncio.to_thread(_key_for_reading, key_file, origin)
    if signer.verifier.vkey != meta.get("vkey"):
        raise KeyFileError(
            f"the key in {key_file} is not the key the ledger in {location} is signed with"
        )
    return origin, signer.verifier
