"""The principal registry on both backends, and across instances sharing PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from grace.errors import AuthenticationError, GovernanceError
from grace.governance.model import PrincipalKind
from grace.governance.principals import PrincipalRegistry
from grace.testing import FakeClock

Opener = Callable[..., PrincipalRegistry]


@pytest.fixture(params=["sqlite", "postgres"])
def open_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens registries on one store of the parametrised backend (closed afterwards)."""
    opened: list[PrincipalRegistry] = []
    if request.param == "postgres":
        dsn = request.getfixturevalue("pg_dsn")

        def make(**kw: object) -> PrincipalRegistry:
            reg = PrincipalRegistry.open_postgres(dsn, clock=kw.pop("clock", FakeClock()), **kw)  # type: ignore[arg-type]
            opened.append(reg)
            return reg
    else:

        def make(**kw: object) -> PrincipalRegistry:
            reg = PrincipalRegistry(tmp_path / "principals.db", clock=FakeClock())
            opened.append(reg)
            return reg

    yield make
    for reg in opened:
        reg.close()


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for another instance's change to arrive."""
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.01)


def refused(registry: PrincipalRegistry, key: str) -> bool:
    """Whether the registry refuses the key."""
    try:
        registry.authenticate_key(key)
    except AuthenticationError:
        return True
    return False


def test_keys_authenticate_until_revoked_or_disabled(open_registry: Opener) -> None:
    """Keys work for their principal; revoked, tampered, malformed and disabled ones do not."""
    registry = open_registry()
    registry.add("alice", kind=PrincipalKind.HUMAN, roles=["approver"])
    registry.add("agent-7", kind=PrincipalKind.AGENT, autonomy_tier=2, attributes={"team": "x"})
    key = registry.create_key("agent-7")
    agent = registry.authenticate_key(key)
    assert (agent.id, agent.autonomy_tier, dict(agent.attributes)) == ("agent-7", 2, {"team": "x"})
    with pytest.raises(AuthenticationError, match="invalid"):
        registry.authenticate_key(key[:-2] + "xx")
    with pytest.raises(AuthenticationError, match="malformed"):
        registry.authenticate_key("grace_onlyid")
    assert registry.revoke_key(key.split("_")[1])
    assert not registry.revoke_key(key.split("_")[1])
    with pytest.raises(AuthenticationError, match="revoked"):
        registry.authenticate_key(key)
    other = registry.create_key("alice")
    assert registry.disable("alice")
    with pytest.raises(AuthenticationError, match="disabled"):
        registry.authenticate_key(other)
    with pytest.raises(GovernanceError, match="no enabled principal"):
        registry.create_key("alice")
    assert [p.id for p in registry.all()] == ["agent-7"]
    assert [(k[0], k[2]) for k in registry.keys_of("agent-7")] == [(key.split("_")[1], True)]


def test_duplicate_principals_are_refused(open_registry: Opener) -> None:
    """Principal ids are unique on either backend."""
    registry = open_registry()
    registry.add("alice", kind=PrincipalKind.HUMAN)
    with pytest.raises(GovernanceError, match="already exists"):
        registry.add("alice", kind=PrincipalKind.HUMAN)


def test_a_key_revoked_on_one_instance_is_refused_on_every_instance(open_registry: Opener) -> None:
    """Two registries on one store: a revocation or disabling on one reaches the other."""
    a, b = open_registry(heartbeat_s=0.05), open_registry(heartbeat_s=0.05)
    a.add("ops-bot", kind=PrincipalKind.SERVICE, roles=["operator"])
    key = a.create_key("ops-bot")
    eventually(lambda: not refused(b, key), "the new key authenticates on the other instance")
    assert b.authenticate_key(key).id == "ops-bot"  # now from b's cache
    assert a.revoke_key(key.split("_")[1])
    eventually(lambda: refused(b, key), "the revoked key is refused on the other instance")
    second = b.create_key("ops-bot")
    eventually(lambda: not refused(a, second), "b's key reaches a")
    assert b.disable("ops-bot")
    eventually(lambda: refused(a, second), "a disabled principal's key is refused on a")


async def test_a_lost_listener_reconnects_and_catches_up(pg_dsn: str) -> None:
    """Notifications missed while the listener was cut off are caught up on reconnect."""
    a = PrincipalRegistry.open_postgres(pg_dsn, clock=FakeClock())
    b = PrincipalRegistry.open_postgres(pg_dsn, clock=FakeClock(), heartbeat_s=0.05)
    try:
        a.add("bot", kind=PrincipalKind.SERVICE)
        key = a.create_key("bot")
        eventually(lambda: not refused(b, key), "b knows the key")
        listener = b._store._listener  # type: ignore[attr-defined]
        admin = await asyncpg.connect(pg_dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        finally:
            await admin.close()
        assert a.revoke_key(key.split("_")[1])
        eventually(lambda: refused(b, key), "b refuses the key revoked while it was cut off")
    finally:
        a.close()
        b.close()


def test_a_snapshot_that_cannot_be_refreshed_refuses_every_key(pg_dsn: str) -> None:
    """Fail closed: past max_stale_s without a successful refresh, no key authenticates."""
    clock = FakeClock()
    registry = PrincipalRegistry.open_postgres(
        pg_dsn, clock=clock, heartbeat_s=3600, max_stale_s=7200
    )
    try:
        registry.add("bot", kind=PrincipalKind.SERVICE)
        key = registry.create_key("bot")
        assert registry.authenticate_key(key).id == "bot"
        clock.advance(7201)  # no heartbeat ran in this time: the snapshot may be stale
        with pytest.raises(AuthenticationError, match="could not be refreshed"):
            registry.authenticate_key(key)
        registry.add("other", kind=PrincipalKind.SERVICE)  # a successful reload
        assert registry.authenticate_key(key).id == "bot"
    finally:
        registry.close()


def test_the_postgres_registry_stores_no_plaintext_secret(pg_dsn: str) -> None:
    """Only the SHA-256 of a key's secret reaches the database."""
    registry = PrincipalRegistry.open_postgres(pg_dsn, clock=FakeClock())
    try:
        registry.add("bot", kind=PrincipalKind.SERVICE)
        secret = registry.create_key("bot").rsplit("_", 1)[1]
    finally:
        registry.close()

    async def dump() -> str:
        conn = await asyncpg.connect(pg_dsn)
        try:
            rows = await conn.fetch("SELECT * FROM gov_api_keys")
        finally:
            await conn.close()
        return repr([dict(r) for r in rows])

    import asyncio

    assert secret not in asyncio.run(dump())


def test_a_newer_governance_schema_is_refused(pg_dsn: str) -> None:
    """A database migrated by a newer Grace is not touched."""
    PrincipalRegistry.open_postgres(pg_dsn, clock=FakeClock()).close()

    async def bump() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE gov_meta SET value = '99' WHERE key = 'schema_version'")
        finally:
            await conn.close()

    import asyncio

    asyncio.run(bump())
    with pytest.raises(GovernanceError, match="newer Grace"):
        PrincipalRegistry.open_postgres(pg_dsn, clock=FakeClock())
