"""Shared fixtures: real services gated by reachability, fail-instead-of-skip in CI."""

from __future__ import annotations

import os
import socket

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
