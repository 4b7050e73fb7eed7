"""The trust store on each backend (a real SQLite file, a real PostgreSQL schema) and a real
ledger: durable, audited, serialised."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from grace.errors import TrustError
from grace.governance.model import TrustSource
from grace.ledger import Entry, Ledger
from grace.mesh import TrustScorer
from grace.testing import FakeClock
from grace.trust import Evidence, TrustConfig, TrustLevel, TrustStore

HOUR = 3600.0
CONFIG = TrustConfig(half_life_s=HOUR, max_update=3.0)


@pytest.fixture
async def ledger(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Ledger]:
    """A real ledger in the data dir, on the fake clock."""
    async with await Ledger.open(tmp_path / "data", clock=clock) as opened:
        yield opened


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """Where a test's trust stores keep their subjects: one SQLite file or one PG schema."""

    db: Path
    dsn: str | None

    async def open(
        self, *, config: TrustConfig = CONFIG, clock: FakeClock, audit: Any = None
    ) -> TrustStore:
        """Open a new store handle on this backend."""
        if self.dsn is None:
            return await TrustStore.open(self.db, config=config, clock=clock, audit=audit)
        return await TrustStore.open_postgres(self.dsn, config=config, clock=clock, audit=audit)

    async def rows(self) -> list[tuple[str, int | None]]:
        """``(subject_id, ledger_seq)`` of every stored row, as another connection sees it."""
        if self.dsn is None:
            if not self.db.exists():
                return []
            with sqlite3.connect(self.db) as conn:
                return conn.execute(
                    "SELECT subject_id, ledger_seq FROM subjects ORDER BY subject_id"
                ).fetchall()
        conn = await asyncpg.connect(self.dsn)
        try:
            records = await conn.fetch(
                "SELECT subject_id, ledger_seq FROM trust_subjects ORDER BY subject_id"
            )
        finally:
            await conn.close()
        return [(r[0], r[1]) for r in records]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The same test on each backend: a SQLite file, then a fresh PostgreSQL schema."""
    db = tmp_path / "data" / "trust.db"
    if request.param == "sqlite":
        return Backend(db=db, dsn=None)
    return Backend(db=db, dsn=request.getfixturevalue("pg_dsn"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where the SQLite trust database lives (the SQLite-only tests)."""
    return tmp_path / "data" / "trust.db"


@pytest.fixture
async def store(backend: Backend, clock: FakeClock, ledger: Ledger) -> AsyncIterator[TrustStore]:
    """A trust store recording into the ledger."""
    async with await backend.open(clock=clock, audit=ledger) as opened:
        yield opened


async def trust_entries(ledger: Ledger) -> list[Entry]:
    """Every ledger entry of the trust subsystem, oldest first."""
    return list((await ledger.query(subsystem="trust", limit=10_000)).entries)


def stored_rows(db: Path) -> list[tuple[Any, ...]]:
    """The subjects table as another connection sees it."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM subjects ORDER BY subject_id").fetchall()


# -- scoring and persistence -------------------------------------------------------------


async def test_unknown_subject_scores_the_prior(store: TrustStore) -> None:
    """A subject with no record gets the default score, confidence 0 and no update time."""
    score = await store.get_trust_score("never-seen")
    assert score.composite_score == CONFIG.default_score == 0.5
    assert score.confidence == 0.0
    assert score.updated_at is None
    assert await store.score("never-seen") == 0.5
    assert not store.is_quarantined("never-seen")
    assert await store.list_scores() == []


async def test_evidence_moves_the_score_and_its_dimension(store: TrustStore) -> None:
    """Successes raise reliability and the composite; a violation lowers governance."""
    up = await store.record("svc", Evidence.HEALING_SUCCESS)
    assert up.reliability > 0.5
    assert up.composite_score > 0.5
    assert up.evidence_count == 1.0
    down = await store.record("svc", "governance_violation", weight=2.0)  # type: ignore[arg-type]
    assert down.governance_compliance < 0.5
    assert down.composite_score < up.composite_score
    assert down.evidence_count == 3.0
    assert await store.get_trust_score("svc") == down


async def test_scores_survive_a_restart_unchanged(
    backend: Backend, clock: FakeClock, ledger: Ledger
) -> None:
    """Closing and reopening the database restores exactly the same scores."""
    async with await backend.open(clock=clock, audit=ledger) as first:
        await first.record("svc-a", Evidence.VERIFICATION_PASS, weight=2.5)
        clock.advance(60)
        await first.record("svc-a", Evidence.ANOMALY, reason="p99 spike")
        await first.record("svc-b", Evidence.GOVERNANCE_VIOLATION)
        before = await first.list_scores()
    async with await backend.open(clock=clock, audit=ledger) as second:
        assert await second.list_scores() == before
    assert len(before) == 2


async def test_restart_decays_from_the_stored_update_time(
    backend: Backend, clock: FakeClock, ledger: Ledger
) -> None:
    """Time that passes while the store is closed counts: decay runs from the last update."""
    async with await backend.open(clock=clock, audit=ledger) as first:
        recorded = await first.record("svc", Evidence.HEALING_FAILURE, weight=3.0)
    clock.advance(HOUR)
    async with await backend.open(clock=clock, audit=ledger) as second:
        after_one = await second.get_trust_score("svc")
        assert after_one.evidence_count == pytest.approx(1.5)
        assert after_one.updated_at == recorded.updated_at
        assert recorded.reliability < after_one.reliability < 0.5
        clock.advance(HOUR)
        assert (await second.get_trust_score("svc")).evidence_count == pytest.approx(0.75)


async def test_new_evidence_lands_on_decayed_evidence(store: TrustStore, clock: FakeClock) -> None:
    """Evidence is decayed to now before the new piece is added."""
    await store.record("svc", Evidence.VERIFICATION_PASS, weight=2.0)
    clock.advance(HOUR)
    score = await store.record("svc", Evidence.VERIFICATION_PASS)
    assert score.evidence_count == pytest.approx(2.0)
    assert score.updated_at == clock.now()


async def test_old_evidence_fades_back_to_the_default(store: TrustStore, clock: FakeClock) -> None:
    """Without new evidence, a bad record fades toward the prior instead of lasting forever."""
    for _ in range(5):
        await store.record("svc", Evidence.ANOMALY, weight=3.0)
    low = await store.get_trust_score("svc")
    assert low.composite_score < 0.5
    clock.advance(40 * HOUR)
    faded = await store.get_trust_score("svc")
    assert faded.composite_score == pytest.approx(CONFIG.default_score, abs=1e-6)
    assert faded.confidence < 1e-6


async def test_oversized_weight_is_clamped_to_max_update(store: TrustStore, ledger: Ledger) -> None:
    """One event carries at most max_update; the ledger shows requested and applied weight."""
    score = await store.record("svc", Evidence.HEALING_FAILURE, weight=1000)
    assert score.evidence_count == CONFIG.max_update
    (entry,) = await trust_entries(ledger)
    assert entry.payload["weight"] == CONFIG.max_update
    assert entry.payload["requested_weight"] == 1000


async def test_list_scores_puts_the_least_trusted_first(store: TrustStore) -> None:
    """Quarantined subjects lead, then ascending composite; the limit is honoured."""
    await store.record("good", Evidence.VERIFICATION_PASS, weight=3.0)
    await store.record("bad", Evidence.VERIFICATION_FAIL, weight=3.0)
    await store.record("jailed", Evidence.VERIFICATION_PASS, weight=3.0)
    await store.quarantine("jailed", reason="exfiltration suspected", actor="immune_kernel")
    assert [s.subject_id for s in await store.list_scores()] == ["jailed", "bad", "good"]
    assert [s.subject_id for s in await store.list_scores(limit=1)] == ["jailed"]
    for bad_limit in (0, -1, 10_001, 2.5, True):
        with pytest.raises(TrustError, match="list limit"):
            await store.list_scores(limit=bad_limit)  # type: ignore[arg-type]


# -- quarantine --------------------------------------------------------------------------


async def test_quarantine_forces_zero_until_release(
    backend: Backend, clock: FakeClock, ledger: Ledger
) -> None:
    """A quarantined subject scores 0.0 (very_low) across restarts until it is released."""
    async with await backend.open(clock=clock, audit=ledger) as store:
        await store.record("svc", Evidence.HEALING_SUCCESS, weight=3.0)
        jailed = await store.quarantine("svc", reason="lateral movement", actor="alice")
        assert jailed.composite_score == 0.0
        assert jailed.level is TrustLevel.VERY_LOW
        assert jailed.quarantined
        assert store.is_quarantined("svc")
        more = await store.record("svc", Evidence.HEALING_SUCCESS, weight=3.0)
        assert more.composite_score == 0.0
        assert more.evidence_count == 6.0
    async with await backend.open(clock=clock, audit=ledger) as store:
        assert store.is_quarantined("svc")
        assert await store.score("svc") == 0.0
        released = await store.release("svc", reason="reimaged", actor="bob")
        assert not released.quarantined
        assert not store.is_quarantined("svc")
        assert released.composite_score > CONFIG.default_score
        assert released.composite_score == await store.score("svc")


async def test_quarantine_of_an_unknown_subject_applies_at_once(store: TrustStore) -> None:
    """A subject can be quarantined before any evidence about it exists (fail closed)."""
    jailed = await store.quarantine("new-agent", reason="unsigned binary", actor="immune_kernel")
    assert jailed.composite_score == 0.0
    assert jailed.evidence_count == 0.0
    assert await store.score("new-agent") == 0.0


async def test_quarantine_and_release_are_in_the_ledger(
    store: TrustStore, ledger: Ledger, backend: Backend
) -> None:
    """Both steps are ledger entries naming actor, subject, reason and the composite change."""
    await store.record("svc", Evidence.HEALING_SUCCESS)
    before = await store.score("svc")
    await store.quarantine("svc", reason="lateral movement", actor="alice")
    await store.quarantine("svc", reason="still suspicious", actor="carol")
    released = await store.release("svc", reason="reimaged", actor="bob")
    _, first, again, release = await trust_entries(ledger)
    assert (first.action, first.actor, first.resource, first.result) == (
        "trust.quarantined",
        "alice",
        "svc",
        "quarantined",
    )
    assert first.payload["reason"] == "lateral movement"
    assert first.payload["old_composite"] == before
    assert first.payload["new_composite"] == 0.0
    assert not first.payload["already_quarantined"]
    assert again.payload["already_quarantined"]
    assert (release.action, release.actor, release.result) == ("trust.released", "bob", "medium")
    assert release.payload["old_composite"] == 0.0
    assert release.payload["new_composite"] == released.composite_score
    assert release.payload["reason"] == "reimaged"
    assert await backend.rows() == [("svc", release.seq)]  # the row names its last entry


async def test_release_of_a_subject_not_in_quarantine_is_refused(
    store: TrustStore, ledger: Ledger
) -> None:
    """Releasing what is not quarantined (a mistyped id) raises and writes nothing."""
    await store.record("svc", Evidence.HEALING_SUCCESS)
    size = await ledger.size()
    for subject in ("svc", "typo-svc"):
        with pytest.raises(TrustError, match="is not quarantined"):
            await store.release(subject, reason="done", actor="bob")
    assert await ledger.size() == size
    assert [s.subject_id for s in await store.list_scores()] == ["svc"]


# -- the ledger --------------------------------------------------------------------------


async def test_every_update_is_a_ledger_entry_with_old_and_new_composite(
    store: TrustStore, ledger: Ledger, backend: Backend
) -> None:
    """record() appends trust.updated naming subject, evidence, weight, reason and the change."""
    first = await store.record("svc", Evidence.VERIFICATION_FAIL, reason="bandit: B602")
    second = await store.record("svc", Evidence.NORMAL_OPERATION)
    one, two = await trust_entries(ledger)
    assert (one.subsystem, one.actor, one.action, one.resource) == (
        "trust",
        "trust_store",
        "trust.updated",
        "svc",
    )
    assert one.result == str(first.level)
    assert one.payload["subject_id"] == "svc"
    assert one.payload["evidence"] == "verification_fail"
    assert one.payload["dimension"] == "verification_record"
    assert one.payload["positive"] is False
    assert one.payload["reason"] == "bandit: B602"
    assert one.payload["old_composite"] == CONFIG.default_score
    assert one.payload["new_composite"] == first.composite_score
    assert two.payload["old_composite"] == first.composite_score
    assert two.payload["new_composite"] == second.composite_score
    assert two.payload["dimensions"]["anomaly_history"] == second.anomaly_history
    assert one.payload["previous_seq"] is None
    assert two.payload["previous_seq"] == one.seq
    assert await backend.rows() == [("svc", two.seq)]


async def test_a_failing_ledger_rolls_the_change_back(
    tmp_path: Path, backend: Backend, clock: FakeClock
) -> None:
    """If the audit append fails, record/quarantine raise TrustError and nothing is kept."""
    broken = await Ledger.open(tmp_path / "data", clock=clock)
    await broken.close()  # appends now raise LedgerError
    async with await backend.open(clock=clock, audit=broken) as store:
        with pytest.raises(TrustError, match=r"trust\.updated of 'svc' in the ledger failed"):
            await store.record("svc", Evidence.ANOMALY)
        with pytest.raises(TrustError, match="ledger failed"):
            await store.quarantine("svc", reason="r", actor="alice")
        unchanged = await store.get_trust_score("svc")
        assert unchanged.updated_at is None
        assert unchanged.composite_score == CONFIG.default_score
        assert not store.is_quarantined("svc")
    assert await backend.rows() == []


async def test_a_ledger_that_never_confirms_times_out_and_rolls_back(
    backend: Backend, clock: FakeClock
) -> None:
    """An audit append that hangs is abandoned after audit_timeout_s; nothing is kept."""

    class StuckLedger:
        """An AuditSink whose append never completes."""

        async def append(self, **fields: Any) -> Any:
            """Wait forever."""
            await asyncio.Event().wait()

    config = TrustConfig(audit_timeout_s=0.05)
    async with await backend.open(config=config, clock=clock, audit=StuckLedger()) as store:
        with pytest.raises(TrustError, match="did not confirm"):
            await store.record("svc", Evidence.ANOMALY)
        assert await store.list_scores() == []
    assert await backend.rows() == []


# -- concurrency ---------------------------------------------------------------------------


async def test_concurrent_records_for_one_subject_are_all_kept(
    store: TrustStore, ledger: Ledger, backend: Backend, clock: FakeClock
) -> None:
    """Many simultaneous updates of one subject are serialised: none is lost or reordered."""
    n = 200
    evidence = [Evidence.NORMAL_OPERATION, Evidence.ANOMALY] * (n // 2)
    await asyncio.gather(*(store.record("svc", e) for e in evidence))
    score = await store.get_trust_score("svc")
    assert score.evidence_count == n
    entries = await trust_entries(ledger)
    assert len(entries) == n
    for previous, entry in itertools.pairwise(entries):
        assert entry.payload["previous_seq"] == previous.seq
        assert entry.payload["old_composite"] == previous.payload["new_composite"]
    async with await backend.open(clock=clock) as reopened:
        assert await reopened.get_trust_score("svc") == score


async def test_two_stores_on_one_database_do_not_lose_updates(
    backend: Backend, clock: FakeClock
) -> None:
    """Each change reads the row inside its write transaction, so a second writer is safe."""
    async with (
        await backend.open(clock=clock) as one,
        await backend.open(clock=clock) as two,
    ):
        await asyncio.gather(
            *(s.record("svc", Evidence.VERIFICATION_PASS) for s in [one, two] * 25)
        )
    async with await backend.open(clock=clock) as check:
        assert (await check.get_trust_score("svc")).evidence_count == 50


async def test_a_cancelled_record_lands_whole_or_not_at_all(
    store: TrustStore, ledger: Ledger
) -> None:
    """Cancelling a caller never leaves a change without its ledger entry, or the reverse."""
    task = asyncio.create_task(store.record("svc", Evidence.ANOMALY))
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # The next change queues behind the cancelled one on the writer thread.
    score = await store.record("svc", Evidence.ANOMALY)
    entries = await trust_entries(ledger)
    assert score.evidence_count == len(entries)
    assert len(entries) in (1, 2)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ({"subject_id": ""}, "subject id must not be empty"),
        ({"subject_id": "s" * 257}, "subject id is 257 characters long; the limit is 256"),
        ({"subject_id": "svc\r\nforged"}, "subject id contains the control character"),
        ({"subject_id": 7}, "subject id must be a string"),
        ({"evidence": "looks_fine"}, "unknown evidence 'looks_fine'"),
        ({"evidence": None}, "unknown evidence None"),
        ({"weight": float("nan")}, "evidence weight must be finite"),
        ({"weight": float("inf")}, "evidence weight must be finite"),
        ({"weight": 0}, "evidence weight must be > 0"),
        ({"weight": -2.0}, "evidence weight must be > 0"),
        ({"weight": "1"}, "evidence weight must be a number"),
        ({"reason": "r" * 2001}, "reason is 2001 characters long"),
        ({"reason": None}, "reason must be a string"),
    ],
)
async def test_bad_input_is_refused_naming_the_problem(
    store: TrustStore, ledger: Ledger, backend: Backend, call: dict[str, Any], match: str
) -> None:
    """Empty/oversized ids, non-finite weights, unknown evidence: TrustError, nothing written."""
    arguments: dict[str, Any] = {"subject_id": "svc", "evidence": Evidence.ANOMALY, **call}
    with pytest.raises(TrustError, match=match):
        await store.record(**arguments)
    assert await ledger.size() == 0
    assert await backend.rows() == []
    assert await store.list_scores() == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ({"actor": ""}, "actor must not be empty"),
        ({"actor": "a\x1b[2J"}, "actor contains the control character"),
        ({"reason": ""}, "reason must not be empty"),
        ({"subject_id": "x" * 300}, "subject id is 300 characters long"),
    ],
)
async def test_quarantine_needs_a_subject_an_actor_and_a_reason(
    store: TrustStore, ledger: Ledger, call: dict[str, Any], match: str
) -> None:
    """Quarantine and release refuse a missing actor or reason, naming it; nothing is written."""
    arguments: dict[str, Any] = {"subject_id": "svc", "reason": "why", "actor": "alice", **call}
    with pytest.raises(TrustError, match=match):
        await store.quarantine(**arguments)
    with pytest.raises(TrustError, match=match):
        await store.release(**arguments)
    assert await ledger.size() == 0
    assert not store.is_quarantined("svc")


async def test_reads_refuse_bad_subject_ids(store: TrustStore) -> None:
    """score, get_trust_score and is_quarantined validate the id like record does."""
    with pytest.raises(TrustError, match="must not be empty"):
        await store.score("")
    with pytest.raises(TrustError, match="characters long"):
        await store.get_trust_score("x" * 1000)
    with pytest.raises(TrustError, match="control character"):
        store.is_quarantined("svc\n")


# -- the file ------------------------------------------------------------------------------


async def test_the_database_is_a_wal_sqlite_file_in_the_data_dir(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Given the data dir, the store writes <data_dir>/trust.db in WAL mode."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    async with await TrustStore.open(data_dir, clock=clock) as store:
        assert store.path == data_dir / "trust.db"
        assert store.location == str(store.path)
        await store.record("svc", Evidence.VERIFICATION_PASS)
        with sqlite3.connect(data_dir / "trust.db") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert len(stored_rows(data_dir / "trust.db")) == 1


async def test_open_refuses_a_database_that_is_not_a_trust_store(
    tmp_path: Path, ledger: Ledger
) -> None:
    """The ledger's database, a text file or a directory named trust.db are refused clearly."""
    with pytest.raises(TrustError, match="not a Grace trust store"):
        await TrustStore.open(ledger.data_dir / "ledger.db")
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just some text that is long enough" * 20)
    with pytest.raises(TrustError, match="not a SQLite database"):
        await TrustStore.open(text)
    (tmp_path / "odd" / "trust.db").mkdir(parents=True)
    with pytest.raises(TrustError, match="not a file"):
        await TrustStore.open(tmp_path / "odd")


async def test_a_damaged_row_fails_closed_at_open(db: Path, clock: FakeClock) -> None:
    """A row with an impossible count is an error naming the subject, not a silent score."""
    async with await TrustStore.open(db, clock=clock) as store:
        await store.record("svc", Evidence.VERIFICATION_PASS)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE subjects SET reliability_f = -5")
    with pytest.raises(TrustError, match="record of subject 'svc' is damaged"):
        await TrustStore.open(db, clock=clock)


async def test_a_closed_store_refuses_every_call(backend: Backend, clock: FakeClock) -> None:
    """After close, reads and writes raise TrustError (the gate turns that into a denial)."""
    store = await backend.open(clock=clock)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(TrustError, match="closed"):
        await store.score("svc")
    with pytest.raises(TrustError, match="closed"):
        await store.record("svc", Evidence.ANOMALY)
    with pytest.raises(TrustError, match="closed"):
        store.is_quarantined("svc")
    with pytest.raises(TrustError, match="closed"):
        await store.list_scores()


async def test_the_store_plugs_into_the_gate_and_the_mesh(store: TrustStore) -> None:
    """It is a governance TrustSource, and its bound score method is a mesh TrustScorer."""
    source: TrustSource = store
    scorer: TrustScorer = store.score
    await store.record("agent-7", Evidence.GOVERNANCE_COMPLIANT, weight=3.0)
    assert await source.score("agent-7") == await scorer("agent-7") > 0.5
