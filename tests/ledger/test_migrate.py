"""Copying a SQLite ledger into PostgreSQL: same roots proven, tampering reported, resumable."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Final

import pytest
from typer.testing import CliRunner

from grace.cli.ledger import ledger_app
from grace.config import GraceSettings
from grace.errors import LedgerError
from grace.ledger import Ledger, LedgerConfig, NoteVerifier, merkle, verify_bundle
from grace.ledger.checkpoint import load_or_create_signing_key
from grace.ledger.migration import migrate_ledger
from grace.testing import FakeClock

pytestmark = pytest.mark.postgres

CONFIG: Final = LedgerConfig(checkpoint_every=7, checkpoint_interval_s=0)


async def _grow(data: Path, count: int) -> None:
    """Append ``count`` entries to the SQLite ledger in ``data`` (checkpoints every 7)."""
    clock = FakeClock()
    async with await Ledger.open(data, config=CONFIG, clock=clock) as ledger:
        start = await ledger.size()
        for i in range(start, start + count):
            clock.advance(0.25)
            await ledger.append(
                subsystem="governance",
                actor=f"agent-{i % 5}",
                action="decide",
                resource=f"svc/{i}",
                payload={"i": i, "note": "naïve ✓" * (i % 3), "ratio": i / 3},
            )


async def _open_pair(source_dir: Path, dsn: str) -> tuple[Ledger, Ledger]:
    source = await Ledger.open(source_dir, read_only=True)
    target = await Ledger.open_postgres(
        dsn, key_file=source_dir / "ledger.key", config=LedgerConfig(checkpoint_interval_s=0)
    )
    return source, target


async def test_a_copy_has_the_same_roots_and_continues_the_chain(
    pg_dsn: str, tmp_path: Path
) -> None:
    """53 entries in batches of 10: every checkpoint root matches, proofs and appends work."""
    data = tmp_path / "data"
    await _grow(data, 53)
    seen: list[tuple[str, int, int]] = []
    source, target = await _open_pair(data, pg_dsn)
    try:
        report = await migrate_ledger(
            source, target, batch_size=10, progress=lambda *a: seen.append(a)
        )
        assert report.ok, report.problem
        assert (report.copied_entries, report.copied_checkpoints, report.resumed_from) == (53, 7, 0)
        assert [r.tree_size for r in report.roots] == [7, 14, 21, 28, 35, 42, 49, 53]
        assert all(r.match for r in report.roots)
        assert report.roots[-1].target_root == (await source.root()).hex()
        assert report.target_verify is not None
        assert report.target_verify.checkpoints_checked == 7
        assert ("copy", 53, 53) in seen
        bundle = await target.prove(12)
        assert verify_bundle(bundle, NoteVerifier.from_vkey(source.verifier.vkey)).valid
        receipt = await target.append(subsystem="s", actor="after", action="migrate")
        assert receipt.seq == 54
        last, new = await target.get(53), await target.get(54)
        assert last is not None
        assert new is not None
        assert new.prev_hash == last.entry_hash
        assert merkle.verify_consistency(
            53,
            54,
            await source.root(),
            await target.root(),
            await target.prove_consistency(53),
        )
        assert (await target.verify()).valid
    finally:
        await source.close()
        await target.close()


async def test_a_tampered_source_is_reported_and_not_copied(pg_dsn: str, tmp_path: Path) -> None:
    """An entry edited in the SQLite file: the report names the seq, the target stays empty."""
    data = tmp_path / "data"
    await _grow(data, 20)
    with sqlite3.connect(data / "ledger.db") as conn:
        conn.execute(
            "UPDATE entries SET entry = replace(entry, '\"i\":12', '\"i\":21') WHERE seq = 13"
        )
    conn.close()
    source, target = await _open_pair(data, pg_dsn)
    try:
        report = await migrate_ledger(source, target)
        assert not report.ok
        assert report.problem is not None
        assert "does not verify at seq 13" in report.problem
        assert report.copied_entries == 0
        assert await target.size() == 0
    finally:
        await source.close()
        await target.close()


async def test_an_interrupted_copy_is_resumed(pg_dsn: str, tmp_path: Path) -> None:
    """A target holding a prefix of the source gets only what it lacks."""
    data = tmp_path / "data"
    await _grow(data, 30)
    source, target = await _open_pair(data, pg_dsn)
    try:
        assert (await migrate_ledger(source, target, batch_size=8)).ok
    finally:
        await source.close()
        await target.close()
    await _grow(data, 12)
    source, target = await _open_pair(data, pg_dsn)
    try:
        report = await migrate_ledger(source, target, batch_size=8)
        assert report.ok, report.problem
        assert (report.resumed_from, report.copied_entries, report.copied_checkpoints) == (
            30,
            12,
            2,
        )
        assert await target.size() == 42
    finally:
        await source.close()
        await target.close()


async def test_a_target_that_is_not_a_prefix_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """Another history under the same key and origin is not overwritten or extended."""
    data = tmp_path / "data"
    await _grow(data, 10)
    source, target = await _open_pair(data, pg_dsn)
    try:
        await target.append(subsystem="other", actor="history", action="x")
        with pytest.raises(LedgerError, match="not a prefix"):
            await migrate_ledger(source, target)
        assert await target.size() == 1
    finally:
        await source.close()
        await target.close()


async def test_a_target_signed_by_another_key_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """The copy must be checkable with the source's key: another key is refused up front."""
    data = tmp_path / "data"
    await _grow(data, 3)
    other = tmp_path / "other.key"
    load_or_create_signing_key(other, "grace.local/ledger")
    source = await Ledger.open(data, read_only=True)
    target = await Ledger.open_postgres(pg_dsn, key_file=other)
    try:
        with pytest.raises(LedgerError, match="signed by"):
            await migrate_ledger(source, target)
        with pytest.raises(LedgerError, match="writable PostgreSQL"):
            await migrate_ledger(target, source)
    finally:
        await source.close()
        await target.close()


def test_the_migrate_command_prints_roots_and_exits_by_outcome(pg_dsn: str, tmp_path: Path) -> None:
    """`grace ledger migrate` prints both sides' roots: 0 when identical, 2 when refused."""
    data = tmp_path / "data"
    asyncio.run(_grow(data, 15))
    runner = CliRunner()
    args = ["migrate", "--from", f"sqlite:{data}", "--to", pg_dsn, "--batch-size", "4"]
    done = runner.invoke(ledger_app, args, obj=GraceSettings())
    assert done.exit_code == 0, done.output
    assert "identical" in done.output
    assert " 14 " in done.output
    again = runner.invoke(ledger_app, args, obj=GraceSettings())
    assert again.exit_code == 0, again.output  # nothing left to copy: proven again
    assert "copied 0 entries" in again.output
    other = tmp_path / "other"
    asyncio.run(_grow(other, 16))
    refused = runner.invoke(
        ledger_app,
        [
            "migrate",
            "--from",
            f"sqlite:{other}",
            "--to",
            pg_dsn,
            "--key-file",
            str(data / "ledger.key"),
        ],
        obj=GraceSettings(),
    )
    assert refused.exit_code == 2
    bad = runner.invoke(ledger_app, ["migrate", "--from", f"sqlite:{data}", "--to", "mysql://x"])
    assert bad.exit_code == 2
    assert "postgresql://" in bad.output
