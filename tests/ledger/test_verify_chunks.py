"""Verification in small chunks agrees with one pass over the whole log, tampered or not."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from grace.ledger import Ledger, LedgerConfig
from grace.ledger._verify import verify_connection
from grace.ledger.entry import VerifyReport

SIZE = 53
CONFIG = LedgerConfig(checkpoint_every=7, checkpoint_interval_s=0)
Tamper = Callable[[sqlite3.Connection], object]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed 53-entry ledger with checkpoints at 7, 14, ..., 49."""
    import asyncio

    path = tmp_path_factory.mktemp("chunks") / "ledger"

    async def build() -> None:
        async with await Ledger.open(path, config=CONFIG) as ledger:
            for i in range(SIZE):
                await ledger.append(subsystem="s", actor=f"a{i % 4}", action="x", payload={"i": i})

    asyncio.run(build())
    return path


def _verify(data_dir: Path, *, chunk_bits: int) -> VerifyReport:
    import asyncio

    async def run() -> VerifyReport:
        async with await Ledger.open(data_dir, config=CONFIG, read_only=True) as ledger:
            conn = sqlite3.connect(data_dir / "ledger.db")
            try:
                return verify_connection(
                    conn,
                    str(data_dir / "ledger.db"),
                    ledger.verifier,
                    ledger.origin,
                    chunk_bits=chunk_bits,
                )
            finally:
                conn.close()

    return asyncio.run(run())


def _tampered(template: Path, tmp_path: Path, tamper: Tamper | None) -> Path:
    data_dir = tmp_path / "copy"
    shutil.copytree(template, data_dir)
    if tamper is not None:
        conn = sqlite3.connect(data_dir / "ledger.db")
        with conn:
            tamper(conn)
        conn.close()
    return data_dir


def _flip_hash(seq: int) -> Tamper:
    return lambda c: c.execute("UPDATE entries SET entry_hash = zeroblob(32) WHERE seq = ?", (seq,))


def _flip_nodes(seq: int) -> Tamper:
    return lambda c: c.execute(
        "UPDATE entries SET nodes = zeroblob(length(nodes)) WHERE seq = ?", (seq,)
    )


def _swap(a: int, b: int) -> Tamper:
    def run(c: sqlite3.Connection) -> None:
        ra = c.execute(
            "SELECT entry, entry_hash, nodes FROM entries WHERE seq = ?", (a,)
        ).fetchone()
        rb = c.execute(
            "SELECT entry, entry_hash, nodes FROM entries WHERE seq = ?", (b,)
        ).fetchone()
        c.execute("UPDATE entries SET entry=?, entry_hash=?, nodes=? WHERE seq=?", (*rb, a))
        c.execute("UPDATE entries SET entry=?, entry_hash=?, nodes=? WHERE seq=?", (*ra, b))

    return run


TAMPERS: dict[str, Tamper | None] = {
    "intact": None,
    "hash-at-chunk-start": _flip_hash(9),
    "hash-at-chunk-end": _flip_hash(8),
    "hash-late": _flip_hash(50),
    "nodes-above-chunk-level": _flip_nodes(16),
    "nodes-inside-chunk": _flip_nodes(6),
    "swap-across-border": _swap(8, 9),
    "delete-first-of-chunk": lambda c: c.execute("DELETE FROM entries WHERE seq = 17"),
    "delete-tail": lambda c: c.execute("DELETE FROM entries WHERE seq > 45"),
    "seq-zero": lambda c: c.execute(
        "INSERT INTO entries(seq, entry, entry_hash, nodes) "
        "SELECT 0, entry, entry_hash, nodes FROM entries WHERE seq = 1"
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_chunked_verification_reports_what_a_single_pass_reports(
    template: Path, tmp_path: Path, name: str
) -> None:
    """For chunks of 1, 2, 4 and 8 entries, the verdict and first bad seq match one chunk."""
    data_dir = _tampered(template, tmp_path, TAMPERS[name])
    whole = _verify(data_dir, chunk_bits=16)
    for bits in (0, 1, 2, 3):
        chunked = _verify(data_dir, chunk_bits=bits)
        assert (chunked.valid, chunked.first_bad_seq) == (whole.valid, whole.first_bad_seq), (
            bits,
            chunked,
            whole,
        )
        if whole.valid:
            assert chunked.root_hash == whole.root_hash
            assert chunked.checkpoints_checked == whole.checkpoints_checked == 7
    if name == "intact":
        assert whole.valid
        assert whole.entries_checked == SIZE
    else:
        assert not whole.valid


async def test_verify_root_matches_ledger_root(template: Path, tmp_path: Path) -> None:
    """The root a valid report gives is the ledger's own Merkle root."""
    data_dir = _tampered(template, tmp_path, None)
    async with await Ledger.open(data_dir, config=CONFIG, read_only=True) as ledger:
        report = await ledger.verify()
        assert report.root_hash == (await ledger.root()).hex()
