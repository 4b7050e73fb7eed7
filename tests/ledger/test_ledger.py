"""The Ledger API: durable receipts, reads, queries, proofs and checkpoints."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import stat
from pathlib import Path

import pytest

from grace.errors import LedgerError
from grace.ledger import Ledger, LedgerConfig, ProofBundle, merkle, verify_bundle
from grace.ledger.checkpoint import NoteVerifier
from grace.testing import FakeClock


async def _fill(ledger: Ledger, n: int, *, actor: str = "alice") -> None:
    await asyncio.gather(
        *(
            ledger.append(
                subsystem="governance" if i % 2 else "avn",
                actor=f"{actor}{i % 3}",
                action="deploy" if i % 5 else "restart_service",
                resource=f"svc:{i}",
                result="approved",
                payload={"i": i},
            )
            for i in range(n)
        )
    )


async def _leaves(ledger: Ledger, n: int) -> list[bytes]:
    out = []
    for seq in range(1, n + 1):
        raw = await ledger.get_canonical(seq)
        assert raw is not None
        out.append(merkle.leaf_hash(raw))
    return out


async def test_append_returns_gapless_receipts_with_chained_hashes(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Receipts are 1..n, each entry's prev_hash is the previous entry_hash."""
    async with await Ledger.open(tmp_path, clock=clock) as ledger:
        first = await ledger.append(
            subsystem="governance",
            actor="alice",
            action="deploy",
            resource="svc:api",
            result="approved",
            payload={"why": "release 1.2"},
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
        assert entry.timestamp == clock.now()
        assert entry.payload == {"why": "release 1.2"}
        for seq in range(2, 52):
            prev, cur = await ledger.get(seq - 1), await ledger.get(seq)
            assert prev is not None
            assert cur is not None
            assert cur.prev_hash == prev.entry_hash
        assert await ledger.get(52) is None


async def test_entry_hash_is_the_merkle_leaf_of_canonical_bytes(tmp_path: Path) -> None:
    """entry_hash = SHA-256(0x00 || canonical bytes), the RFC 6962 leaf hash."""
    async with await Ledger.open(tmp_path) as ledger:
        r = await ledger.append(subsystem="s", actor="a", action="x", payload={"k": [1, "é"]})
        raw = await ledger.get_canonical(r.seq)
        assert raw is not None
        assert merkle.leaf_hash(raw).hex() == r.entry_hash


async def test_timestamps_come_from_the_injected_clock_and_never_go_back(tmp_path: Path) -> None:
    """Entries carry the fake clock's time; a clock stepping back does not reorder time."""
    clock = FakeClock()
    async with await Ledger.open(tmp_path, clock=clock) as ledger:
        clock.advance(10)
        a = await ledger.append(subsystem="s", actor="a", action="x")
        clock._now -= dt.timedelta(seconds=5)  # a wall clock stepping backwards
        b = await ledger.append(subsystem="s", actor="a", action="x")
        assert a.timestamp == dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.UTC)
        assert b.timestamp == a.timestamp


async def test_reopen_continues_the_same_chain_and_tree(tmp_path: Path) -> None:
    """After close and reopen, appends continue the chain and the tree stays consistent."""
    async with await Ledger.open(tmp_path) as ledger:
        await _fill(ledger, 37)
        root37 = await ledger.root()
    async with await Ledger.open(tmp_path) as ledger:
        r = await ledger.append(subsystem="s", actor="a", action="x")
        assert r.seq == 38
        previous = await ledger.get(37)
        entry = await ledger.get(38)
        assert previous is not None
        assert entry is not None
        assert entry.prev_hash == previous.entry_hash
        proof = await ledger.prove_consistency(37)
        assert merkle.verify_consistency(37, 38, root37, await ledger.root(), proof)
        assert (await ledger.verify()).valid


async def test_stored_proofs_equal_the_pure_functions(tmp_path: Path) -> None:
    """Roots, inclusion and consistency proofs from the store match merkle.* over all leaves."""
    async with await Ledger.open(tmp_path) as ledger:
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


async def test_proof_requests_outside_the_tree_are_clear_errors(tmp_path: Path) -> None:
    """Asking for seq 0, a seq past the size or a tree larger than the log raises LedgerError."""
    async with await Ledger.open(tmp_path) as ledger:
        await _fill(ledger, 5)
        with pytest.raises(LedgerError, match="not in a tree of size 5"):
            await ledger.prove_inclusion(0)
        with pytest.raises(LedgerError, match="not in a tree of size 3"):
            await ledger.prove_inclusion(4, 3)
        with pytest.raises(LedgerError, match="between 0 and the log size 5"):
            await ledger.prove_inclusion(1, 6)
        with pytest.raises(LedgerError, match="old size 6"):
            await ledger.prove_consistency(6, 5)


async def test_checkpoints_are_signed_every_n_entries(tmp_path: Path) -> None:
    """With checkpoint_every=10, sizes 10, 20, ... get signed checkpoints automatically."""
    config = LedgerConfig(checkpoint_every=10, checkpoint_interval_s=0)
    async with await Ledger.open(tmp_path, config=config) as ledger:
        for i in range(25):
            await ledger.append(subsystem="s", actor="a", action="x", payload={"i": i})
        sizes = [cp.tree_size for cp in await ledger.checkpoints()]
        assert sizes == [20, 10]
        for cp in await ledger.checkpoints():
            assert ledger.verifier.verify(cp.note)
            assert cp.root_hash == await ledger.root(cp.tree_size)


async def test_checkpoints_are_signed_after_the_interval_when_there_is_news(tmp_path: Path) -> None:
    """With a short interval, new entries get a checkpoint without anyone asking."""
    config = LedgerConfig(checkpoint_every=0, checkpoint_interval_s=0.05)
    async with await Ledger.open(tmp_path, config=config) as ledger:
        await _fill(ledger, 3)
        for _ in range(100):
            latest = await ledger.latest_checkpoint()
            if latest is not None and latest.tree_size == 3:
                break
            await asyncio.sleep(0.02)
        latest = await ledger.latest_checkpoint()
        assert latest is not None
        assert latest.tree_size == 3
        count = len(await ledger.checkpoints())
        await asyncio.sleep(0.2)
        assert len(await ledger.checkpoints()) == count  # nothing new: no new checkpoint


async def test_checkpoint_on_demand_is_idempotent_without_new_entries(tmp_path: Path) -> None:
    """Two checkpoints with nothing appended between return the same signed note."""
    async with await Ledger.open(tmp_path) as ledger:
        await _fill(ledger, 4)
        a = await ledger.checkpoint()
        b = await ledger.checkpoint()
        assert a == b
        assert a.note.startswith("grace.local/ledger\n4\n")
        assert "\n\n\u2014 grace.local/ledger " in a.note


async def test_checkpoint_note_verifies_with_exported_vkey(tmp_path: Path) -> None:
    """The exported verifier key checks checkpoints; a modified note fails."""
    async with await Ledger.open(tmp_path) as ledger:
        await _fill(ledger, 3)
        cp = await ledger.checkpoint()
        verifier = NoteVerifier.from_vkey(ledger.verifier.vkey)
        assert verifier.verify(cp.note)
        assert not verifier.verify(cp.note.replace("\n3\n", "\n4\n", 1))


async def test_signing_key_is_created_private(tmp_path: Path) -> None:
    """The Ed25519 key file is created with mode 0600."""
    async with await Ledger.open(tmp_path):
        mode = (tmp_path / "ledger.key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


async def test_proof_bundle_verifies_offline_and_detects_a_changed_entry(tmp_path: Path) -> None:
    """A bundle checks with only the public key; editing the entry or proof breaks it."""
    async with await Ledger.open(tmp_path) as ledger:
        await _fill(ledger, 20)
        await ledger.checkpoint()
        await _fill(ledger, 5)
        bundle = await ledger.prove(7, 13)  # proof at 13, consistency to the signed 20
        verifier = NoteVerifier.from_vkey(ledger.verifier.vkey)
    data = bundle.to_json()
    assert data["tree_size"] == 13
    assert bundle.checkpoint.tree_size == 20
    assert verify_bundle(ProofBundle.from_json(data), verifier).valid
    raw = base64.b64decode(data["entry_canonical"]).replace(b'"alice', b'"mallory')
    forged = dict(data, entry_canonical=base64.b64encode(raw).decode())
    assert not verify_bundle(ProofBundle.from_json(forged), verifier).valid
    wrong_proof = dict(data, inclusion_proof=list(reversed(data["inclusion_proof"])))
    assert not verify_bundle(ProofBundle.from_json(wrong_proof), verifier).valid
    bad_consistency = dict(data, consistency_proof=data["consistency_proof"][:-1])
    assert not verify_bundle(ProofBundle.from_json(bad_consistency), verifier).valid


async def test_query_filters_and_paginates(tmp_path: Path, clock: FakeClock) -> None:
    """Filters combine; pages chain through next_after without gaps or repeats."""
    async with await Ledger.open(tmp_path, clock=clock) as ledger:
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
        both = await ledger.query(subsystem="avn", actor="alice0", limit=100)
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


async def test_read_only_handle_reads_while_writer_is_open(tmp_path: Path) -> None:
    """A second, read-only handle verifies and reads while the writer runs; it cannot append."""
    async with await Ledger.open(tmp_path) as writer:
        await _fill(writer, 10)
        async with await Ledger.open(tmp_path, read_only=True) as reader:
            assert await reader.size() == 10
            assert (await reader.verify()).valid
            with pytest.raises(LedgerError, match="read-only"):
                await reader.append(subsystem="s", actor="a", action="x")


async def test_closed_ledger_refuses_work(tmp_path: Path) -> None:
    """After close, appends and reads raise LedgerError instead of hanging."""
    ledger = await Ledger.open(tmp_path)
    await ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        await ledger.append(subsystem="s", actor="a", action="x")
    with pytest.raises(LedgerError, match="closed"):
        await ledger.get(1)


async def test_close_commits_appends_already_queued(tmp_path: Path) -> None:
    """Appends queued before close() are committed, and their callers get receipts."""
    ledger = await Ledger.open(tmp_path)
    tasks = [
        asyncio.create_task(ledger.append(subsystem="s", actor="a", action="x")) for _ in range(20)
    ]
    await asyncio.sleep(0)
    await ledger.close()
    receipts = await asyncio.gather(*tasks)
    assert sorted(r.seq for r in receipts) == list(range(1, 21))


async def test_failed_commit_fails_its_callers_and_writes_nothing(tmp_path: Path) -> None:
    """A commit that SQLite refuses raises LedgerError to each caller; no receipt is faked."""
    import sqlite3

    async with await Ledger.open(tmp_path) as ledger:
        await ledger.append(subsystem="s", actor="a", action="x")
        intruder = sqlite3.connect(tmp_path / "ledger.db")
        with intruder:  # someone else takes seq 2 behind the writer's back
            intruder.execute(
                "INSERT INTO entries(seq, entry, entry_hash, nodes) VALUES (2, x'7b7d', x'00', x'')"
            )
        intruder.close()
        results = await asyncio.gather(
            *(ledger.append(subsystem="s", actor="a", action="x") for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, LedgerError) for r in results)
        assert "nothing was appended" in str(results[0])
        assert await ledger.size() == 1


async def test_writer_crash_fails_callers_and_later_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the writer itself breaks, pending and later appends fail; close() still works."""

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    ledger = await Ledger.open(tmp_path)
    monkeypatch.setattr(ledger, "_sequence", broken)
    with pytest.raises(LedgerError, match="writer stopped"):
        await ledger.append(subsystem="s", actor="a", action="x")
    with pytest.raises(LedgerError, match="writer stopped"):
        await ledger.append(subsystem="s", actor="a", action="x")
    await ledger.close()
    async with await Ledger.open(tmp_path) as reopened:
        assert await reopened.size() == 0
        assert (await reopened.verify()).valid
