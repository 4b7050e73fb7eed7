"""The PostgreSQL trust store across instances: shared rows, fresh snapshots, fail closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from grace.errors import TrustError
from grace.ledger import Ledger
from grace.testing import FakeClock
from grace.trust import Evidence, TrustConfig, TrustLevel, TrustStore
from grace.trust._postgres import SCHEMA_VERSION, PostgresTrustBackend

pytestmark = pytest.mark.postgres

CONFIG = TrustConfig(half_life_s=3600.0, max_update=3.0)
HEARTBEAT_S = 0.05


class Ticker:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        """The current reading."""
        return self.t


async def eventually(check: Callable[[], bool]) -> None:
    """Wait (polling, at most 20 s) until ``check()`` holds."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.02)
    pytest.fail("the condition never held")


async def admin(dsn: str, *statements: str) -> None:
    """Run ``statements`` in one transaction on a separate connection."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def pair(pg_dsn: str, clock: FakeClock) -> AsyncIterator[tuple[TrustStore, TrustStore]]:
    """Two instances' stores on one schema, with a fast heartbeat."""
    async with (
        await TrustStore.open_postgres(
            pg_dsn, config=CONFIG, clock=clock, heartbeat_s=HEARTBEAT_S
        ) as one,
        await TrustStore.open_postgres(
            pg_dsn, config=CONFIG, clock=clock, heartbeat_s=HEARTBEAT_S
        ) as two,
    ):
        yield one, two


async def test_a_quarantine_on_one_instance_is_seen_by_the_other(
    pair: tuple[TrustStore, TrustStore],
) -> None:
    """B's synchronous is_quarantined turns True shortly after A quarantines, and back."""
    a, b = pair
    await a.quarantine("svc", reason="lateral movement", actor="alice")
    await eventually(lambda: b.is_quarantined("svc"))
    assert await b.score("svc") == 0.0
    await a.release("svc", reason="reimaged", actor="bob")
    await eventually(lambda: not b.is_quarantined("svc"))


async def test_evidence_on_one_instance_gives_the_same_score_on_the_other(
    pair: tuple[TrustStore, TrustStore], clock: FakeClock
) -> None:
    """B's snapshot holds exactly A's state, so both compute identical scores."""
    a, b = pair
    await a.record("svc", Evidence.VERIFICATION_PASS, weight=2.5)
    clock.advance(60)
    recorded = await a.record("svc", Evidence.ANOMALY)
    await eventually(lambda: stored_count(b, "svc") == recorded.evidence_count)
    assert await b.get_trust_score("svc") == recorded
    assert await b.list_scores() == await a.list_scores()


def snapshot_ids(store: TrustStore) -> set[str]:
    """Subjects in a store's in-memory snapshot."""
    return set(store._backend.states)


def stored_count(store: TrustStore, subject: str) -> float:
    """The stored (undecayed) evidence count of ``subject`` in a store's snapshot."""
    state = store._backend.states.get(subject)
    return -1.0 if state is None else state.evidence_count


async def test_two_instances_recording_concurrently_lose_nothing(
    pair: tuple[TrustStore, TrustStore], tmp_path: Path, clock: FakeClock, pg_dsn: str
) -> None:
    """50 concurrent records on each of two instances: all 100 counted, all 100 audited."""
    a, b = pair
    async with await Ledger.open(tmp_path / "data", clock=clock) as ledger:
        a._audit = b._audit = ledger  # both instances audit into one ledger
        await asyncio.gather(*(s.record("svc", Evidence.NORMAL_OPERATION) for s in [a, b] * 50))
        entries = (await ledger.query(subsystem="trust", limit=1000)).entries
        assert len(entries) == 100
        seqs = {e.seq for e in entries}
        previous = [e.payload["previous_seq"] for e in entries]
        assert previous.count(None) == 1  # one chain: each entry names the one before
        assert set(previous) - {None} == seqs - {max(seqs)}
    await eventually(lambda: stored_count(a, "svc") == stored_count(b, "svc") == 100)
    async with await TrustStore.open_postgres(pg_dsn, config=CONFIG, clock=clock) as check:
        assert (await check.get_trust_score("svc")).evidence_count == 100


async def test_a_change_without_notification_is_picked_up_by_the_heartbeat(
    pair: tuple[TrustStore, TrustStore], pg_dsn: str
) -> None:
    """A missed NOTIFY costs one heartbeat: the counter check reloads the changed rows."""
    a, b = pair
    await a.record("svc", Evidence.HEALING_SUCCESS)
    await eventually(lambda: "svc" in snapshot_ids(b))
    await admin(
        pg_dsn,  # a change exactly as a writer makes it, minus the pg_notify
        "UPDATE trust_counter SET n = n + 1 WHERE name = 'changes'",
        "UPDATE trust_subjects SET quarantined = true, version = version + 1, "
        "change_seq = (SELECT n FROM trust_counter WHERE name = 'changes') "
        "WHERE subject_id = 'svc'",
    )
    await eventually(lambda: a.is_quarantined("svc") and b.is_quarantined("svc"))


async def test_an_instance_that_lost_its_listener_reconnects_and_catches_up(
    pair: tuple[TrustStore, TrustStore], pg_dsn: str
) -> None:
    """Killing the LISTEN connections does not leave a snapshot behind for good."""
    a, b = pair
    await admin(
        pg_dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'grace-trust-listen' AND datname = current_database()",
    )
    await a.quarantine("svc", reason="beaconing", actor="immune_kernel")
    await eventually(lambda: b.is_quarantined("svc"))
    await b.record("other", Evidence.ANOMALY)
    await eventually(lambda: "other" in snapshot_ids(a))


async def test_a_stale_snapshot_scores_everyone_zero_until_refreshed(
    pg_dsn: str, clock: FakeClock
) -> None:
    """No refresh for max_stale_s: every score reads 0.0, quarantine is unchanged; logged once."""
    ticker = Ticker()
    backend = await PostgresTrustBackend.open(
        pg_dsn, audit_timeout_s=5.0, max_stale_s=15.0, heartbeat_s=HEARTBEAT_S, monotonic=ticker
    )
    async with TrustStore(backend=backend, config=CONFIG, clock=clock, audit=None) as store:
        good = await store.record("good", Evidence.HEALING_SUCCESS, weight=3.0)
        await store.quarantine("jailed", reason="exfiltration", actor="alice")
        assert good.composite_score > 0.5
        await admin(pg_dsn, "ALTER TABLE trust_counter RENAME TO trust_counter_away")
        ticker.t += 16.0
        with capture_logs() as logs:
            assert await store.score("good") == 0.0
            assert await store.score("stranger") == 0.0
            stale = await store.get_trust_score("good")
            assert (stale.level, stale.confidence) == (TrustLevel.VERY_LOW, 0.0)
            assert stale.reliability == good.reliability  # the evidence itself is shown
            assert [s.composite_score for s in await store.list_scores()] == [0.0, 0.0]
        assert store.is_quarantined("jailed")
        assert not store.is_quarantined("good")
        assert [e["event"] for e in logs].count("trust_snapshot_stale") == 1
        await admin(pg_dsn, "ALTER TABLE trust_counter_away RENAME TO trust_counter")
        await eventually(lambda: not backend.stale())
        assert await store.score("good") == good.composite_score


async def test_a_newer_schema_is_refused(pg_dsn: str, clock: FakeClock) -> None:
    """Tables written by a newer Grace are not touched: open raises naming both versions."""
    async with await TrustStore.open_postgres(pg_dsn, clock=clock):
        pass
    await admin(pg_dsn, "UPDATE trust_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(TrustError, match=f"version 99.*up to {SCHEMA_VERSION}"):
        await TrustStore.open_postgres(pg_dsn, clock=clock)


async def test_a_foreign_trust_meta_table_is_refused(pg_dsn: str, clock: FakeClock) -> None:
    """A trust_meta table of something else is an error, not adopted."""
    await admin(
        pg_dsn,
        "CREATE TABLE trust_meta (key text PRIMARY KEY, value text NOT NULL)",
        "INSERT INTO trust_meta VALUES ('format', 'someone-else')",
    )
    with pytest.raises(TrustError, match="not Grace's trust store"):
        await TrustStore.open_postgres(pg_dsn, clock=clock)


async def test_a_refused_release_leaves_no_placeholder_row(pg_dsn: str, clock: FakeClock) -> None:
    """The row inserted to lock a new subject goes away with the refused change."""
    async with await TrustStore.open_postgres(pg_dsn, clock=clock) as store:
        with pytest.raises(TrustError, match="is not quarantined"):
            await store.release("typo-svc", reason="done", actor="bob")
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM trust_subjects") == 0
    finally:
        await conn.close()


async def test_an_unreachable_database_is_a_trust_error_without_credentials(
    clock: FakeClock,
) -> None:
    """Opening fails with TrustError naming host and database, never the password."""
    dsn = "postgresql://grace:s3cret@127.0.0.1:1/trustdb"
    with pytest.raises(TrustError, match=r"postgresql://127\.0\.0\.1:1/trustdb") as raised:
        await TrustStore.open_postgres(dsn, clock=clock)
    assert "s3cret" not in str(raised.value)
