"""The shared servers the scale-out features need are really there (CI fails without them)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.postgres
def test_postgres_answers_protocol_handshake(postgres_addr: tuple[str, int]) -> None:
    """PostgreSQL answers an SSLRequest with S or N, so it speaks the protocol."""
    from tests.conftest import postgres_handshake

    assert postgres_handshake(postgres_addr) in (b"S", b"N")


@pytest.mark.nats
def test_nats_announces_jetstream(nats_addr: tuple[str, int]) -> None:
    """The NATS server's INFO says JetStream is enabled."""
    from tests.conftest import nats_handshake

    info = json.loads(nats_handshake(nats_addr)[len(b"INFO ") :])
    assert info.get("jetstream") is True
