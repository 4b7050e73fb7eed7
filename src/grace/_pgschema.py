"""Versioned schema migrations for Grace's PostgreSQL stores (governance, trust).

Each store keeps a ``<prefix>_meta(key, value)`` table with its ``format`` and
``schema_version``. :func:`migrate` takes a per-schema advisory lock (instances starting
together migrate one at a time), refuses a foreign or newer schema, applies the missing
migrations in order and records the version — all in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from grace.errors import GraceError

__all__ = ["migrate"]

log = structlog.get_logger(__name__)


async def migrate(
    conn: Any,
    location: str,
    *,
    what: str,
    meta_table: str,
    fmt: str,
    migrations: Sequence[tuple[int, str]],
    lock_id: int,
    error: type[GraceError],
) -> str:
    """Create or upgrade ``what``'s tables over asyncpg connection ``conn``; return the
    current schema's name. ``meta_table`` and ``migrations`` are the caller's constants."""
    latest = migrations[-1][0]
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", lock_id)
        schema = await conn.fetchval("SELECT current_schema()")
        if schema is None:
            raise error(f"{location}: no schema on the search_path exists")
        exists = await conn.fetchval(f"SELECT to_regclass('{meta_table}') IS NOT NULL")
        version = 0
        if exists:
            rows = await conn.fetch(f"SELECT key, value FROM {meta_table}")  # noqa: S608 - a constant
            meta = {r["key"]: r["value"] for r in rows}
            if meta.get("format") != fmt:
                raise error(
                    f"{location} has a {meta_table} table that is not Grace's {what} store's "
                    f"(format {meta.get('format')!r})"
                )
            text = meta.get("schema_version", "")
            if not text.isdigit():
                raise error(f"{location} records {what} schema version {text!r}")
            version = int(text)
            if version > latest:
                raise error(
                    f"{location} has {what} schema version {version}, written by a newer "
                    f"Grace; this Grace knows versions up to {latest} and will not touch it"
                )
        for number, sql in migrations:
            if number > version:
                await conn.execute(sql)
                log.info(f"{what}_postgres_migrated", location=location, schema_version=number)
        if not exists:
            await conn.execute(
                f"INSERT INTO {meta_table} (key, value) "  # noqa: S608 - a constant
                "VALUES ('format', $1), ('schema_version', $2)",
                fmt,
                str(latest),
            )
        elif version < latest:
            await conn.execute(
                f"UPDATE {meta_table} SET value = $1 "  # noqa: S608 - a constant
                "WHERE key = 'schema_version'",
                str(latest),
            )
        return str(schema)
