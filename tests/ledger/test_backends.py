"""The Ledger's behaviours hold on both stores: SQLite files and a PostgreSQL database."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt

import pytest

from grace.errors import EntryRejected, LedgerError
from grace.ledger import Ledger, LedgerConfig, ProofBundle, merkle, verify_bundle
from grace.ledger.checkpoint import NoteVerifier
from grace.testing import FakeClock
from tests.ledger.conftest import Backend

QUIET = LedgerConfig(checkpoint_every=0, checkpoint_interval_s=0)


async def _fill(ledger: Ledger, n: int, *, start: int = 0) -> None:
    await asyncio.gather(
        *(
            ledger.append(
                subsystem="governance" if i % 2 else "avn",
                actor=f"alice{i % 3}",
                action="deploy" if i % 5 else "restart_service",
                resource=f"svc:{i}",
                result="approved",
                payload={"i": i},
            )
            for i in range(start, start + n)
        )
    )


async def _leaves(ledger: Ledger, n: int) -> list[bytes]:
    out = []
    for seq in range(1, n + 1):
        raw = await ledger.get_canonical(seq)
        assert raw is not None
        out.append(merkle.leaf_hash(raw))
    return out


async def test_appends_are_gapless_and_chained(backend: Backend, clock: FakeClock) -> None:
    """Receipts are 1..n, entries carry the clock's time and link to the previous hash."""
    async with await backend.open(clock=clock, config=QUIET) as ledger:
        first = await ledger.append(
            subsystem="governance", actor="alice", action="deploy", payload={"why": "1.2"}
        )
        receipts = await asyncio.gather(
            *(
                ledger.append(subsystem="s", actor="a", action="x", payload={"i": i})
                for i in range(50)
            )
        )
        assert first.seq == 1
        assert sorted(r.seq for r in receipts) == list(range(2, 52))
        entry = await ledger.get(1)
        assert entry is not None
        assert entry.prev_hash == "0" * 64
        assert entry.entry_hash == first.entry_hash
        assert entry.timestamp == clock.now() == first.timestamp
        for r in receipts:
            stored = await ledger.get(r.seq)
            previous = await ledger.get(r.seq - 1)
            assert stored is not None
            assert previous is not None
            assert stored.entry_hash == r.entry_hash
            assert stored.prev_hash == previous.entry_hash
        assert await ledger.get(52) is None
        assert await ledger.size() == 51
        report = await ledger.verify()
        assert report.valid, report
        assert report.root_hash == (await ledger.root()).hex()


async def test_stored_proofs_equal_the_pure_functions(backend: Backend) -> None:
    """Roots, inclusion and consistency proofs from the store match merkle.* over all leaves."""
    async with await backend.open(config=QUIET) as ledger:
        await _fill(ledger, 77)
        leaves = await _leaves(ledger, 77)
        for size in (1, 2, 3, 8, 33, 64, 77):
            assert await ledger.root(size) == merkle.root_hash(leaves[:size])
            for seq in {1, size // 2 + 1, size}:
                proof = await ledger.prove_inclusion(seq, size)
                assert proof == merkle.inclusion_proof(seq - 1, size, leaves)
            for old in {0, 1, size // 3, size - 1, size}:
                cproof = await ledger.prove_consistency(old, size)
                assert cproof == merkle.consistency_proof(old, size, leaves)
        with pytest.raises(LedgerError, match="between 0 and the log size 77"):
            await ledger.prove_inclusion(1, 78)


async def test_checkpoints_every_n_and_on_demand(backend: Backend) -> None:
    """checkpoint_every signs sizes 10, 20; an on-demand checkpoint without news is the same."""
    config = LedgerConfig(checkpoint_every=10, checkpoint_interval_s=0)
    async with await backend.open(config=config) as ledger:
        for i in range(25):
            await ledger.append(subsystem="s", actor="a", action="x", payload={"i": i})
        assert [cp.tree_size for cp in await ledger.checkpoints()] == [20, 10]
        a = await ledger.checkpoint()
        b = await ledger.checkpoint()
        assert a == b
        assert a.tree_size == 25
        assert [cp.tree_size for cp in await ledger.checkpoints(limit=2)] == [25, 20]
        for cp in await ledger.checkpoints():
            assert ledger.verifier.verify(cp.note)
            assert cp.root_hash == await ledger.root(cp.tree_size)
        assert (await ledger.verify()).checkpoints_checked == 3


async def test_proof_bundle_verifies_offline(backend: Backend) -> None:
    """A bundle checks with only the public key; editing its entry breaks it."""
    async with await backend.open(config=QUIET) as ledger:
        await _fill(ledger, 20)
        await ledger.checkpoint()
        await _fill(ledger, 5, start=20)
        bundle = await ledger.prove(7, 13)
        fresh = await ledger.prove(23)  # no checkpoint covers 23 yet: the writer signs one
        verifier = NoteVerifier.from_vkey(ledger.verifier.vkey)
    assert bundle.checkpoint.tree_size == 20
    assert fresh.checkpoint.tree_size == 25
    data = bundle.to_json()
    assert verify_bundle(ProofBundle.from_json(data), verifier).valid
    assert verify_bundle(fresh, verifier).valid
    raw = base64.b64decode(data["entry_canonical"]).replace(b'"alice', b'"mallory')
    forged = dict(data, entry_canonical=base64.b64encode(raw).decode())
    assert not verify_bundle(ProofBundle.from_json(forged), verifier).valid


async def test_query_filters_and_paginates(backend: Backend, clock: FakeClock) -> None:
    """Filters combine; pages chain through next_after; time bounds and newest-first work."""
    async with await backend.open(clock=clock, config=QUIET) as ledger:
        for i in range(30):
            clock.advance(1)
            await ledger.append(
                subsystem="governance" if i % 2 else "avn",
                actor=f"alice{i % 3}",
                action="deploy",
                payload={"i": i},
            )
        seen: list[int] = []
        after = None
        while True:
            page = await ledger.query(subsystem="governance", limit=4, after=after)
            seen += [e.seq for e in page.entries]
            if page.next_after is None:
                break
            after = page.next_after
        assert seen == list(range(2, 31, 2))
        both = await ledger.query(subsystem="avn", actor="alice0", action="deploy", limit=100)
        assert [e.payload["i"] for e in both.entries] == [0, 6, 12, 18, 24]
        ranged = await ledger.query(seq_from=5, seq_to=8)
        assert [e.seq for e in ranged.entries] == [5, 6, 7, 8]
        start = dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.UTC)
        timed = await ledger.query(since=start, until=start + dt.timedelta(seconds=3))
        assert [e.seq for e in timed.entries] == [10, 11, 12]
        newest = await ledger.query(limit=3, newest_first=True)
        assert [e.seq for e in newest.entries] == [30, 29, 28]
        older = await ledger.query(limit=3, newest_first=True, after=newest.next_after)
        assert [e.seq for e in older.entries] == [27, 26, 25]
        assert (await ledger.query(actor="nobody")).entries == ()
        assert (await ledger.query(after=2**70)).entries == ()
        assert [e.seq for e in (await ledger.query(seq_from=-5, seq_to=2)).entries] == [1, 2]
        assert (await ledger.query(seq_to=-3)).entries == ()
        huge = await ledger.query(after=2**64, newest_first=True, limit=1)
        assert [e.seq for e in huge.entries] == [30]


async def test_unusual_field_text_round_trips_and_is_queryable(backend: Backend) -> None:
    """Actors with quotes, backslashes, control and non-ASCII characters are found and verified."""
    odd = ['quo"te', "back\\slash", "naïve ✓", "tab\there", "emoji \U0001f600"]
    async with await backend.open(config=QUIET) as ledger:
        for actor in odd:
            await ledger.append(subsystem="sübsystem", actor=actor, action='act"ion')
        for seq, actor in enumerate(odd, start=1):
            page = await ledger.query(actor=actor, subsystem="sübsystem", action='act"ion')
            assert [e.seq for e in page.entries] == [seq]
        assert (await ledger.query(actor="\ud800")).entries == ()
        report = await ledger.verify()
        assert report.valid, report


async def test_reopen_continues_the_same_chain_and_tree(backend: Backend) -> None:
    """After close and reopen, appends continue the chain and the tree stays consistent."""
    async with await backend.open(config=QUIET) as ledger:
        await _fill(ledger, 37)
        root37 = await ledger.root()
        await ledger.checkpoint()
    async with await backend.open(config=QUIET) as ledger:
        r = await ledger.append(subsystem="s", actor="a", action="x")
        assert r.seq == 38
        previous, entry = await ledger.get(37), await ledger.get(38)
        assert previous is not None
        assert entry is not None
        assert entry.prev_hash == previous.entry_hash
        proof = await ledger.prove_consistency(37)
        assert merkle.verify_consistency(37, 38, root37, await ledger.root(), proof)
        assert (await ledger.checkpoint()).tree_size == 38
        assert (await ledger.verify()).valid


async def test_read_only_handle_reads_while_writer_is_open(backend: Backend) -> None:
    """A read-only handle verifies and reads while the writer runs; it cannot append."""
    async with await backend.open(config=QUIET) as writer:
        await _fill(writer, 10)
        async with await backend.open(read_only=True) as reader:
            assert reader.read_only
            assert await reader.size() == 10
            assert (await reader.verify()).valid
            with pytest.raises(LedgerError, match="read-only"):
                await reader.append(subsystem="s", actor="a", action="x")
            with pytest.raises(LedgerError, match="read-only"):
                await reader.checkpoint()


async def test_close_commits_queued_appends_then_refuses_work(backend: Backend) -> None:
    """Appends queued before close() get receipts; afterwards appends and reads raise."""
    ledger = await backend.open(config=QUIET)
    tasks = [
        asyncio.create_task(ledger.append(subsystem="s", actor="a", action="x")) for _ in range(20)
    ]
    await asyncio.sleep(0)
    await ledger.close()
    receipts = await asyncio.gather(*tasks)
    assert sorted(r.seq for r in receipts) == list(range(1, 21))
    await ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        await ledger.append(subsystem="s", actor="a", action="x")
    with pytest.raises(LedgerError, match="closed"):
        await ledger.get(1)
    with pytest.raises(LedgerError, match="closed"):
        await ledger.verify()


async def test_rejected_append_changes_nothing(backend: Backend) -> None:
    """A payload that is not JSON is refused before queueing; the log stays as it was."""
    async with await backend.open(config=QUIET) as ledger:
        await _fill(ledger, 3)
        with pytest.raises(EntryRejected, match="NaN"):
            await ledger.append(subsystem="s", actor="a", action="x", payload={"v": float("nan")})
        with pytest.raises(EntryRejected, match="must not be empty"):
            await ledger.append(subsystem="s", actor="", action="x")
        assert await ledger.size() == 3
        assert (await ledger.append(subsystem="s", actor="a", action="x")).seq == 4
        assert (await ledger.verify()).valid


async def test_writer_crash_fails_callers_and_later_appends(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If sequencing itself breaks, pending and later appends fail; nothing is stored."""

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    ledger = await backend.open(config=QUIET)
    monkeypatch.setattr(ledger, "_sequence", broken)
    with pytest.raises(LedgerError, match="writer stopped"):
        await ledger.append(subsystem="s", actor="a", action="x")
    with pytest.raises(LedgerError, match="writer stopped"):
        await ledger.append(subsystem="s", actor="a", action="x")
    await ledger.close()
    async with await backend.open(config=QUIET) as reopened:
        assert await reopened.size() == 0
        assert (await reopened.verify()).valid
