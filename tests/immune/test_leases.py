"""Incident leases: the stores (in memory and real PostgreSQL) and the kernel's use of them —
one healing run per incident across instances, takeover after a crash, fail closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from grace.errors import ImmuneError
from grace.immune.kernel import KernelSettings
from grace.immune.leases import (
    LEASE_SCHEMA_VERSION,
    InMemoryLeaseStore,
    LeaseStore,
    PostgresLeaseStore,
    incident_lease_key,
)
from grace.immune.taxonomy import IncidentState
from grace.testing import FakeClock
from tests.immune.test_kernel import anomaly, harness

KEY = incident_lease_key("checkout", "service_down")
TTL = 30.0


class CountingLeases(InMemoryLeaseStore):
    """The in-memory store, signalling its second successful renewal."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.renewed_twice = asyncio.Event()

    async def renew(self, key: str, holder: str, ttl_s: float) -> bool:
        """Renew, then signal once two renewals succeeded."""
        renewed = await super().renew(key, holder, ttl_s)
        if self.renewals >= 2:
            self.renewed_twice.set()
        return renewed


@pytest.fixture
async def pg_leases(pg_dsn: str, clock: FakeClock) -> AsyncIterator[PostgresLeaseStore]:
    """A PostgreSQL lease store in a fresh schema, on the test's fake clock."""
    store = await PostgresLeaseStore.open(pg_dsn, clock=clock)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["memory", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_dsn(request: pytest.FixtureRequest) -> str | None:
    """None for the in-memory store, else the DSN of a fresh PostgreSQL schema."""
    if request.param == "memory":
        return None
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def store(store_dsn: str | None, clock: FakeClock) -> AsyncIterator[LeaseStore]:
    """Each lease store implementation, on the test's fake clock."""
    if store_dsn is None:
        yield InMemoryLeaseStore(clock)
        return
    pg = await PostgresLeaseStore.open(store_dsn, clock=clock)
    try:
        yield pg
    finally:
        await pg.close()


# -- the stores ---------------------------------------------------------------------------


async def test_a_live_lease_belongs_to_its_holder_only(store: LeaseStore) -> None:
    """While a lease is live, another holder's claim fails and the holder's own succeeds."""
    assert await store.claim(KEY, "a", TTL)
    assert not await store.claim(KEY, "b", TTL)
    assert await store.claim(KEY, "a", TTL)
    assert await store.claim(incident_lease_key("checkout", "latency_spike"), "b", TTL)


async def test_an_expired_lease_is_taken_over(store: LeaseStore, clock: FakeClock) -> None:
    """After its ttl a lease nobody renewed goes to the next claimant, and the old holder
    can no longer renew it."""
    assert await store.claim(KEY, "a", TTL)
    clock.advance(TTL - 1)
    assert not await store.claim(KEY, "b", TTL)
    clock.advance(1)
    assert await store.claim(KEY, "b", TTL)
    assert not await store.renew(KEY, "a", TTL)


async def test_renewal_extends_the_lease(store: LeaseStore, clock: FakeClock) -> None:
    """A renewed lease outlives its first ttl; only the holder can renew."""
    assert await store.claim(KEY, "a", TTL)
    clock.advance(TTL - 1)
    assert await store.renew(KEY, "a", TTL)
    assert not await store.renew(KEY, "b", TTL)
    clock.advance(TTL - 1)
    assert not await store.claim(KEY, "b", TTL)


async def test_release_frees_the_lease_for_its_holder_only(store: LeaseStore) -> None:
    """Another holder's release does nothing; the holder's lets the next claim succeed."""
    assert await store.claim(KEY, "a", TTL)
    await store.release(KEY, "b")
    assert not await store.claim(KEY, "b", TTL)
    await store.release(KEY, "a")
    assert await store.claim(KEY, "b", TTL)


async def test_bad_lease_arguments_are_refused(store: LeaseStore) -> None:
    """An empty key or holder or a non-positive ttl is an error naming the problem."""
    with pytest.raises(ImmuneError, match="key and a holder"):
        await store.claim("", "a", TTL)
    with pytest.raises(ImmuneError, match="ttl_s must be positive"):
        await store.claim(KEY, "a", 0)


@pytest.mark.postgres
async def test_concurrent_claims_on_postgres_have_one_winner(pg_dsn: str) -> None:
    """Twenty instances claiming one key at once on the server's clock: exactly one wins."""
    stores = [await PostgresLeaseStore.open(pg_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(stores[i % 4].claim(KEY, f"instance-{i}", TTL) for i in range(20))
        )
        assert results.count(True) == 1
        winner = f"instance-{results.index(True)}"
        assert await stores[0].holder(KEY) == winner
    finally:
        for s in stores:
            await s.close()


@pytest.mark.postgres
async def test_lease_schema_is_versioned_and_a_newer_one_is_refused(pg_dsn: str) -> None:
    """Opening twice keeps the schema; a version from a newer Grace is refused untouched."""
    for _ in range(2):
        opened = await PostgresLeaseStore.open(pg_dsn)
        await opened.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        stored = await conn.fetchval("SELECT value FROM immune_meta WHERE key='schema_version'")
        assert stored == str(LEASE_SCHEMA_VERSION)
        await conn.execute(
            "UPDATE immune_meta SET value = $1 WHERE key = 'schema_version'",
            str(LEASE_SCHEMA_VERSION + 1),
        )
    finally:
        await conn.close()
    with pytest.raises(ImmuneError, match="newer Grace"):
        await PostgresLeaseStore.open(pg_dsn)


# -- the kernel ---------------------------------------------------------------------------


@pytest.mark.postgres
async def test_two_instances_with_the_same_incident_heal_it_once(
    tmp_path: Path, pg_leases: PostgresLeaseStore, clock: FakeClock
) -> None:
    """Both instances open the incident; the lease holder heals, the other records that
    the incident is healed elsewhere and acts on nothing."""
    async with (
        harness(tmp_path / "a", leases=pg_leases, holder="a", clock=clock) as a,
        harness(tmp_path / "b", leases=pg_leases, holder="b", clock=clock) as b,
    ):
        a.health.gate = asyncio.Event()  # hold A inside its run, lease held
        first = await a.kernel.report(anomaly(1, clock=clock))
        await a.health.probed.wait()
        second = await b.kernel.report(anomaly(2, clock=clock))
        await b.kernel.wait_idle()
        assert await pg_leases.holder(KEY) == "a"
        a.health.gate.set()
        await a.kernel.wait_idle()

        assert first is not None
        assert second is not None
        assert len(a.calls) + len(b.calls) == 1
        assert a.calls
        done = a.kernel.incidents.get(first.incident_id)
        assert done is not None
        assert done.state is IncidentState.RESOLVED
        elsewhere = await b.avn("incident_healing_elsewhere")
        assert [e.payload["reason"] for e in elsewhere] == [
            f"another instance holds the lease {KEY!r}"
        ]
        assert b.kernel.get_stats()["healing_elsewhere"] == 1
        assert await pg_leases.holder(KEY) is None  # released after the run


@pytest.mark.postgres
async def test_a_crashed_holders_lease_expires_and_the_next_report_heals(
    tmp_path: Path, pg_leases: PostgresLeaseStore, clock: FakeClock
) -> None:
    """An instance that claimed the incident and died never renews: until the ttl passes the
    survivor holds off, then its next alert for the incident heals it."""
    settings = KernelSettings(lease_ttl_s=TTL)
    assert await pg_leases.claim(KEY, "crashed-instance", TTL)
    async with harness(tmp_path, leases=pg_leases, holder="b", clock=clock, settings=settings) as b:
        incident = await b.kernel.report(anomaly(1, clock=clock))
        await b.kernel.wait_idle()
        assert b.calls == []
        clock.advance(TTL / 2)
        await b.kernel.report(anomaly(2, clock=clock))
        await b.kernel.wait_idle()
        assert b.calls == []
        clock.advance(TTL / 2)
        await b.kernel.report(anomaly(3, clock=clock))
        await b.kernel.wait_idle()

        assert incident is not None
        assert len(b.calls) == 1
        done = b.kernel.incidents.get(incident.incident_id)
        assert done is not None
        assert done.state is IncidentState.RESOLVED
        assert len(await b.avn("incident_healing_elsewhere")) == 1  # recorded once


@pytest.mark.postgres
async def test_a_failing_lease_store_means_no_healing(
    tmp_path: Path, pg_dsn: str, clock: FakeClock
) -> None:
    """When the lease cannot be claimed (the store's connections are gone) nothing is
    executed and the incident is escalated with the reason."""
    broken = await PostgresLeaseStore.open(pg_dsn, clock=clock)
    await broken.close()
    async with harness(tmp_path, leases=broken, holder="a", clock=clock) as h:
        incident = await h.kernel.report(anomaly(1, clock=clock))
        await h.kernel.wait_idle()
        assert incident is not None
        assert h.calls == []
        current = h.kernel.incidents.get(incident.incident_id)
        assert current is not None
        assert current.state is IncidentState.ESCALATED
        assert "lease could not be claimed" in (current.reason or "")
        assert h.kernel.get_stats()["lease_errors"] == 1
        assert h.kernel.get_stats()["healing_attempts"] == 0


async def test_the_lease_is_renewed_while_the_run_lasts_and_released_after(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A run longer than a third of the ttl renews its lease; the lease is gone afterwards."""
    leases = CountingLeases(clock)
    settings = KernelSettings(lease_ttl_s=0.03)
    async with harness(tmp_path, leases=leases, holder="a", clock=clock, settings=settings) as h:
        h.health.gate = asyncio.Event()
        await h.kernel.report(anomaly(1, clock=clock))
        await h.health.probed.wait()
        assert leases.holder(KEY) == "a"
        async with asyncio.timeout(10):
            await leases.renewed_twice.wait()
        h.health.gate.set()
        await h.kernel.wait_idle()
        assert len(h.calls) == 1
        assert leases.holder(KEY) is None


async def test_a_run_that_loses_its_lease_stops_and_records_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    """When another instance took the lease over (this one stalled past the ttl), the run is
    stopped at its next renewal, recorded as lease lost, and the incident stays open."""
    leases = InMemoryLeaseStore(clock)
    settings = KernelSettings(lease_ttl_s=0.03)
    async with harness(tmp_path, leases=leases, holder="a", clock=clock, settings=settings) as h:
        h.health.gate = asyncio.Event()  # never released: the run stalls in verification
        incident = await h.kernel.report(anomaly(1, clock=clock))
        await h.health.probed.wait()
        clock.advance(1)
        assert await leases.claim(KEY, "b", 60)
        await h.kernel.wait_idle()

        assert incident is not None
        current = h.kernel.incidents.get(incident.incident_id)
        assert current is not None
        assert current.state is IncidentState.OPEN
        lost = await h.avn("incident_lease_lost")
        assert len(lost) == 1
        assert "took the lease" in lost[0].payload["reason"]
        assert h.kernel.get_stats()["leases_lost"] == 1
        assert await h.avn("incident_resolved") == []
        assert leases.holder(KEY) == "b"  # never released by the loser
