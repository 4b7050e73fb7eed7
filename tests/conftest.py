"""Shared fixtures: real services gated by reachability, fail-instead-of-skip in CI."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from grace.testing import FakeClock

REQUIRE_SERVICES = os.environ.get("GRACE_REQUIRE_SERVICES") == "1"
POSTGRES_ADDR = (os.environ.get("GRACE_TEST_PG_HOST", "127.0.0.1"), 5432)
NATS_ADDR = (os.environ.get("GRACE_TEST_NATS_HOST", "127.0.0.1"), 4222)


def _unavailable(what: str, reason: str) -> None:
    message = f"{what} is unreachable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (GRACE_REQUIRE_SERVICES=1: this machine must provide it)")
    pytest.skip(message)


def postgres_handshake(addr: tuple[str, int]) -> bytes:
    """Send PostgreSQL's SSLRequest and return the server's one-byte answer (b'S' or b'N')."""
    with socket.create_connection(addr, timeout=3) as s:
        s.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
        return s.recv(1)


def nats_handshake(addr: tuple[str, int]) -> bytes:
    """Return the INFO line a NATS server sends on connect."""
    with socket.create_connection(addr, timeout=3) as s:
        s.settimeout(3)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0]


@pytest.fixture(scope="session")
def postgres_addr() -> tuple[str, int]:
    """Address of a PostgreSQL server that answered the protocol handshake."""
    try:
        answer = postgres_handshake(POSTGRES_ADDR)
    except OSError as e:
        _unavailable(f"PostgreSQL at {POSTGRES_ADDR[0]}:{POSTGRES_ADDR[1]}", str(e))
    if answer not in (b"S", b"N"):
        _unavailable("PostgreSQL", f"unexpected handshake answer {answer!r}")
    return POSTGRES_ADDR


@pytest.fixture(scope="session")
def nats_addr() -> tuple[str, int]:
    """Address of a NATS server with JetStream that sent its INFO line."""
    try:
        info = nats_handshake(NATS_ADDR)
    except OSError as e:
        _unavailable(f"NATS at {NATS_ADDR[0]}:{NATS_ADDR[1]}", str(e))
    if not info.startswith(b"INFO "):
        _unavailable("NATS", f"unexpected greeting {info[:40]!r}")
    return NATS_ADDR


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at 2026-01-01T00:00:00Z."""
    return FakeClock()


# -- PostgreSQL: a fresh database per session, a schema per test ---------------------------
# The shared server is only ever given new databases and schemas, which are dropped again.

_ADMIN_USERS = (None, "postgres")
"""The current OS user first (trust auth), then ``postgres``."""


async def _admin(host: str, port: int) -> Any:
    last: Exception | None = None
    for user in _ADMIN_USERS:
        for database in ("test", "postgres"):
            try:
                return await asyncpg.connect(host=host, port=port, user=user, database=database)
            except (OSError, asyncpg.PostgresError) as e:
                last = e
    raise RuntimeError(f"cannot connect to PostgreSQL at {host}:{port} as an admin: {last}")


@pytest.fixture(scope="session")
def pg_database(postgres_addr: tuple[str, int]) -> Iterator[str]:
    """DSN of a database created for this test session (dropped at the end)."""
    host, port = postgres_addr
    name = f"grace_t_{secrets.token_hex(6)}"

    async def create() -> str:
        conn = await _admin(host, port)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            return str(await conn.fetchval("SELECT current_user"))
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await _admin(host, port)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    user = asyncio.run(create())
    try:
        yield f"postgresql://{user}@{host}:{port}/{name}"
    finally:
        asyncio.run(drop())


@pytest.fixture
async def pg_dsn(pg_database: str) -> AsyncIterator[str]:
    """DSN of a fresh, empty schema in the session's database (dropped afterwards)."""
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        yield f"{pg_database}?search_path={schema}"
    finally:
        conn = await asyncpg.connect(pg_database)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()
