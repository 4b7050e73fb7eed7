"""Tampering with ``ledger.db`` behind the ledger's back is caught by ``Ledger.verify``.

Every test copies a pristine ledger (20 entries, signed checkpoints at sizes 10 and 20),
edits the closed database with the stdlib ``sqlite3`` module the way an attacker with file
access would, re-opens it read-only (a writable open refuses some inconsistent files before
``verify`` could run) and checks the report names the first bad seq precisely.

SQLite evaluates the generated query columns (``json_extract``) on every INSERT/UPDATE, so
it refuses to store an entry that is not JSON; the single-byte entry test therefore flips
the byte in the database file itself, as a hex editor would (SQLite pages carry no checksum).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import hashlib
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import orjson
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grace.errors import LedgerFormatError
from grace.ledger import Ledger, LedgerConfig, VerifyReport
from grace.ledger._tree import CompactRange
from grace.testing import FakeClock

SIZE: Final = 20
CHECKPOINT_SIZES: Final = (10, 20)
CONFIG: Final = LedgerConfig(checkpoint_every=0, checkpoint_interval_s=0)
GENESIS_HEX: Final = "0" * 64

TAMPER_SETTINGS: Final = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Mutation = Callable[[sqlite3.Connection], object]


# -- building and inspecting ledgers --------------------------------------------------------


async def _build(data_dir: Path, *, checkpoints: tuple[int, ...]) -> None:
    """Append SIZE varied entries, signing a checkpoint after each size in ``checkpoints``."""
    clock = FakeClock()
    ledger = await Ledger.open(data_dir, config=CONFIG, clock=clock)
    try:
        for i in range(1, SIZE + 1):
            await ledger.append(
                subsystem=("governance", "immune", "healing")[i % 3],
                actor=f"agent-{i}",
                action="decide" if i % 2 else "heal",
                resource=f"service/{i}",
                result="allowed" if i % 4 else "denied",
                payload={"i": i, "text": "naïve ✓ " * (i % 4), "list": list(range(i % 5))},
            )
            clock.advance(1.25)
            if i in checkpoints:
                await ledger.checkpoint()
    finally:
        await ledger.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger of SIZE entries with checkpoints at 10 and 20, never to be modified."""
    path = tmp_path_factory.mktemp("pristine") / "ledger"
    asyncio.run(_build(path, checkpoints=CHECKPOINT_SIZES))
    return path


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger of SIZE entries without any checkpoint, never to be modified."""
    path = tmp_path_factory.mktemp("unsigned") / "ledger"
    asyncio.run(_build(path, checkpoints=()))
    return path


@contextlib.contextmanager
def _copy(template: Path) -> Iterator[Path]:
    """A private copy of a template ledger directory, removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "ledger"
        shutil.copytree(template, target)
        yield target


@contextlib.contextmanager
def _db(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to a closed ledger's database; commits on success."""
    with contextlib.closing(sqlite3.connect(data_dir / "ledger.db")) as conn, conn:
        yield conn


def _tamper(data_dir: Path, mutation: Mutation) -> None:
    """Apply ``mutation`` to the ledger database in one committed transaction."""
    with _db(data_dir) as conn:
        mutation(conn)


async def _verify(data_dir: Path) -> VerifyReport:
    """Open the (possibly tampered) ledger read-only and run a full verification."""
    ledger = await Ledger.open(data_dir, config=CONFIG, read_only=True)
    try:
        return await ledger.verify()
    finally:
        await ledger.close()


async def _tamper_and_verify(template: Path, mutation: Mutation) -> VerifyReport:
    """Verify a copy of ``template`` after ``mutation`` was applied to its database."""
    with _copy(template) as data_dir:
        _tamper(data_dir, mutation)
        return await _verify(data_dir)


def _assert_detected(report: VerifyReport, first_bad_seq: int | None, reason_part: str) -> None:
    assert not report.valid, report
    assert report.first_bad_seq == first_bad_seq, report
    assert report.reason is not None
    assert reason_part in report.reason, report
    assert report.root_hash is None


def _row(conn: sqlite3.Connection, seq: int) -> tuple[bytes, bytes]:
    row = conn.execute("SELECT entry, entry_hash FROM entries WHERE seq = ?", (seq,)).fetchone()
    assert row is not None, f"no entry {seq}"
    return bytes(row[0]), bytes(row[1])


def _leaf_hash(raw: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + raw).digest()


def _flip(data: bytes, offset: int, mask: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def _flip_in_file(db_file: Path, needle: bytes, offset: int, mask: int) -> int:
    """Flip byte ``offset`` of every copy of ``needle`` in the file; return how many.

    Besides the live cell, a page's free space may still hold a stale copy of a row; flipping
    that too is harmless, and it guarantees the live copy is among those changed.
    """
    data = bytearray(db_file.read_bytes())
    count = 0
    start = data.find(needle)
    while start >= 0:
        data[start + offset] ^= mask
        count += 1
        start = data.find(needle, start + 1)
    db_file.write_bytes(bytes(data))
    return count


def _setup_must_succeed(mutation: Mutation) -> Mutation:
    """Wrap a mutation so a tamper that fails to apply is a test error, not a pass."""

    def run(conn: sqlite3.Connection) -> None:
        try:
            mutation(conn)
        except sqlite3.Error as e:
            raise AssertionError(f"tampering failed: {e}") from e

    return run


def _nodes(conn: sqlite3.Connection, seq: int) -> bytes:
    """The interior Merkle nodes stored with entry ``seq``."""
    (nodes,) = conn.execute("SELECT nodes FROM entries WHERE seq = ?", (seq,)).fetchone()
    assert isinstance(nodes, bytes)
    return nodes


def _truncate(conn: sqlite3.Connection, keep: int) -> None:
    """Cut the log to its first ``keep`` entries (their Merkle nodes go with them)."""
    conn.execute("DELETE FROM entries WHERE seq > ?", (keep,))


def _forge_entry(original: bytes, *, seq: int, prev_hash: bytes) -> bytes:
    """Canonical bytes of ``original`` with a changed actor, relinked to ``prev_hash``."""
    obj = orjson.loads(original)
    obj["actor"] = "mallory"
    obj["seq"] = seq
    obj["prev_hash"] = binascii.hexlify(prev_hash).decode()
    return bytes(rfc8785.dumps(obj))


# -- the pristine copies verify -----------------------------------------------------------


async def test_untampered_copy_verifies(pristine: Path) -> None:
    """A copy of the template ledger verifies, so every failure below is the tamper's doing."""
    with _copy(pristine) as data_dir:
        report = await _verify(data_dir)
    assert report.valid, report
    assert report.entries_checked == SIZE
    assert report.tree_size == SIZE
    assert report.checkpoints_checked == len(CHECKPOINT_SIZES)


# -- single bytes ---------------------------------------------------------------------------


@TAMPER_SETTINGS
@given(seq=st.integers(1, SIZE), data=st.data())
async def test_any_flipped_entry_byte_is_detected_at_its_seq(
    pristine: Path, seq: int, data: st.DataObject
) -> None:
    """Changing any one byte of any stored entry is reported at that entry's seq."""
    with _copy(pristine) as data_dir:
        with _db(data_dir) as conn:
            raw, _ = _row(conn, seq)
            offset = data.draw(st.integers(0, len(raw) - 1), label="offset")
            mask = data.draw(st.integers(1, 255), label="mask")
        assert _flip_in_file(data_dir / "ledger.db", raw, offset, mask) >= 1
        report = await _verify(data_dir)
    _assert_detected(report, seq, "entry bytes do not match the stored entry hash")
    assert report.entries_checked == seq - 1


@TAMPER_SETTINGS
@given(seq=st.integers(1, SIZE), offset=st.integers(0, 31), mask=st.integers(1, 255))
async def test_any_flipped_entry_hash_byte_is_detected_at_its_seq(
    pristine: Path, seq: int, offset: int, mask: int
) -> None:
    """Changing any one byte of any stored entry hash is reported at that entry's seq."""

    def mutate(conn: sqlite3.Connection) -> None:
        _, stored = _row(conn, seq)
        conn.execute(
            "UPDATE entries SET entry_hash = ? WHERE seq = ?", (_flip(stored, offset, mask), seq)
        )

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, seq, "entry bytes do not match the stored entry hash")
    assert report.entries_checked == seq - 1


@settings(max_examples=40, deadline=None)
@given(seq=st.sampled_from(range(2, SIZE + 1, 2)), data=st.data())
async def test_any_flipped_merkle_node_byte_is_detected_at_the_completing_seq(
    pristine: Path, seq: int, data: st.DataObject
) -> None:
    """Changing a byte of a stored Merkle node is reported at the entry that completes it."""
    with _copy(pristine) as data_dir:
        with _db(data_dir) as conn:
            nodes = _nodes(conn, seq)
            assert len(nodes) == 32 * ((seq & -seq).bit_length() - 1)  # one per trailing zero
            offset = data.draw(st.integers(0, len(nodes) - 1), label="offset")
            mask = data.draw(st.integers(1, 255), label="mask")
            conn.execute(
                "UPDATE entries SET nodes = ? WHERE seq = ?", (_flip(nodes, offset, mask), seq)
            )
        report = await _verify(data_dir)
    _assert_detected(report, seq, f"the Merkle nodes stored with entry {seq} differ")


@functools.cache
def _note_mutations(note: str) -> list[tuple[int, int]]:
    """Every (offset, xor mask) that keeps ``note`` valid UTF-8 text."""
    raw = note.encode()
    found: list[tuple[int, int]] = []
    for offset in range(len(raw)):
        for mask in range(1, 256):
            try:
                mutated = _flip(raw, offset, mask).decode()
            except UnicodeDecodeError:
                continue  # see test_checkpoint_note_with_invalid_utf8_is_reported_not_raised
            if mutated != note:
                found.append((offset, mask))
    return found


@TAMPER_SETTINGS
@given(which=st.sampled_from(CHECKPOINT_SIZES), data=st.data())
async def test_any_flipped_checkpoint_note_byte_is_detected(
    pristine: Path, which: int, data: st.DataObject
) -> None:
    """Changing a byte of a signed checkpoint note (keeping it UTF-8 text) fails verification."""
    with _copy(pristine) as data_dir:
        with _db(data_dir) as conn:
            (note,) = conn.execute(
                "SELECT note FROM checkpoints WHERE tree_size = ?", (which,)
            ).fetchone()
            offset, mask = data.draw(st.sampled_from(_note_mutations(note)), label="flip")
            mutated = _flip(note.encode(), offset, mask).decode()
            conn.execute("UPDATE checkpoints SET note = ? WHERE tree_size = ?", (mutated, which))
        report = await _verify(data_dir)
    _assert_detected(report, None, "checkpoint")
    assert report.entries_checked == 0


async def test_checkpoint_signature_padding_bit_flip_is_detected(pristine: Path) -> None:
    """Altering the ignored padding bits of a checkpoint signature's base64 fails verification."""

    def mutate(conn: sqlite3.Connection) -> None:
        (note,) = conn.execute("SELECT note FROM checkpoints WHERE tree_size = 20").fetchone()
        body, _, sig = note.partition("\n\n")
        head, _, token = sig.rstrip("\n").rpartition(" ")
        assert token.endswith("=")  # 68 bytes: one "=", so the last char has 2 padding bits
        assert not token.endswith("==")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        last = alphabet.index(token[-2])
        twin = alphabet[last ^ 0b01]
        forged = f"{body}\n\n{head} {token[:-2]}{twin}=\n"
        assert forged != note
        conn.execute("UPDATE checkpoints SET note = ? WHERE tree_size = 20", (forged,))

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, None, "checkpoint at size 20")


async def test_checkpoint_note_with_invalid_utf8_is_reported_not_raised(pristine: Path) -> None:
    """A checkpoint note rewritten into invalid UTF-8 yields an invalid report, not an exception."""

    def mutate(conn: sqlite3.Connection) -> None:
        (note,) = conn.execute("SELECT note FROM checkpoints WHERE tree_size = 10").fetchone()
        raw = note.encode()
        conn.execute(
            "UPDATE checkpoints SET note = CAST(? AS TEXT) WHERE tree_size = 10",
            (_flip(raw, len(raw) - 10, 0x80),),
        )

    report = await _tamper_and_verify(pristine, _setup_must_succeed(mutate))
    _assert_detected(report, None, "checkpoint")


async def test_entry_rewritten_through_sql_is_detected_at_its_seq(pristine: Path) -> None:
    """Rewriting an entry's result from denied to allowed (hash left alone) is caught there."""

    def mutate(conn: sqlite3.Connection) -> None:
        raw, _ = _row(conn, 8)
        assert b'"result":"denied"' in raw
        forged = raw.replace(b'"result":"denied"', b'"result":"allowed"')
        conn.execute("UPDATE entries SET entry = ? WHERE seq = 8", (forged,))

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, 8, "entry bytes do not match the stored entry hash")


async def test_entry_stored_as_text_is_detected_at_its_seq(pristine: Path) -> None:
    """An entry column rewritten as TEXT (same characters) is reported as not a blob."""

    def mutate(conn: sqlite3.Connection) -> None:
        raw, _ = _row(conn, 7)
        conn.execute("UPDATE entries SET entry = ? WHERE seq = 7", (raw.decode(),))

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, 7, "not a blob")


async def test_entry_stored_as_invalid_utf8_text_is_reported_not_raised(pristine: Path) -> None:
    """An entry rewritten as non-UTF-8 TEXT yields an invalid report at its seq, not a crash."""

    def mutate(conn: sqlite3.Connection) -> None:
        # Still JSON to SQLite (so the generated columns accept it), but not UTF-8.
        conn.execute(
            "UPDATE entries SET entry = CAST(? AS TEXT) WHERE seq = 7", (b'{"actor":"\xff"}',)
        )

    report = await _tamper_and_verify(pristine, _setup_must_succeed(mutate))
    _assert_detected(report, 7, "not a blob")


# -- the seq column ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "first_bad", "reason"),
    [
        pytest.param(5, 1000, 5, "entry 5 is missing (next stored entry is 6)", id="middle-away"),
        pytest.param(1, 1000, 1, "entry 1 is missing (next stored entry is 2)", id="first-away"),
        pytest.param(
            SIZE, 1000, SIZE, f"entry {SIZE} is missing (next stored entry is 1000)", id="last"
        ),
        pytest.param(7, 0, 0, "unexpected entry with seq 0", id="to-zero"),
        pytest.param(7, -3, -3, "unexpected entry with seq -3", id="negative"),
    ],
)
async def test_changed_seq_column_is_detected(
    pristine: Path, old: int, new: int, first_bad: int, reason: str
) -> None:
    """Renumbering one row's seq is reported at the first seq that no longer lines up."""
    report = await _tamper_and_verify(
        pristine,
        lambda conn: conn.execute("UPDATE entries SET seq = ? WHERE seq = ?", (new, old)),
    )
    _assert_detected(report, first_bad, reason)


# -- deleting rows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "reason"),
    [
        pytest.param(11, "entry 11 is missing (next stored entry is 12)", id="middle"),
        pytest.param(1, "entry 1 is missing (next stored entry is 2)", id="first"),
    ],
)
async def test_deleted_row_is_detected_at_its_seq(pristine: Path, seq: int, reason: str) -> None:
    """Deleting an entry that has successors is reported at the deleted seq."""
    report = await _tamper_and_verify(
        pristine, lambda conn: conn.execute("DELETE FROM entries WHERE seq = ?", (seq,))
    )
    _assert_detected(report, seq, reason)
    assert report.entries_checked == seq - 1


async def test_deleted_middle_row_makes_writable_open_refuse(pristine: Path) -> None:
    """A writer refuses to append onto a log with a hole instead of continuing its chain."""
    with _copy(pristine) as data_dir:
        _tamper(data_dir, lambda conn: conn.execute("DELETE FROM entries WHERE seq = 11"))
        with pytest.raises(LedgerFormatError, match=r"inconsistent \(19 entries up to seq 20"):
            await Ledger.open(data_dir, config=CONFIG)


async def test_deleted_last_row_is_detected_by_the_checkpoint(pristine: Path) -> None:
    """Deleting the last entry (with its Merkle nodes) is caught by the checkpoint covering it."""
    report = await _tamper_and_verify(pristine, lambda conn: _truncate(conn, SIZE - 1))
    _assert_detected(
        report,
        SIZE,
        f"the log ends at entry {SIZE - 1} but a signed checkpoint covers {SIZE} entries",
    )
    assert report.checkpoints_checked == 1


async def test_deleted_uncheckpointed_tail_is_not_detectable(unsigned: Path) -> None:
    """Without a checkpoint, a careful cut of the tail leaves a valid shorter log (by design)."""
    report = await _tamper_and_verify(unsigned, lambda conn: _truncate(conn, 13))
    assert report.valid, report
    assert report.entries_checked == 13
    assert report.checkpoints_checked == 0


@pytest.mark.parametrize(
    ("keep", "checkpoints_ok"),
    [
        pytest.param(19, 1, id="one-below-last-checkpoint"),
        pytest.param(15, 1, id="between-checkpoints"),
        pytest.param(10, 1, id="at-earlier-checkpoint"),
        pytest.param(4, 0, id="below-all-checkpoints"),
        pytest.param(0, 0, id="everything"),
    ],
)
async def test_truncated_tail_below_last_checkpoint_is_detected(
    pristine: Path, keep: int, checkpoints_ok: int
) -> None:
    """Cutting the log below a signed checkpoint is reported at the first removed seq."""
    report = await _tamper_and_verify(pristine, lambda conn: _truncate(conn, keep))
    _assert_detected(
        report,
        keep + 1,
        f"the log ends at entry {keep} but a signed checkpoint covers {SIZE} entries",
    )
    assert report.entries_checked == keep
    assert report.tree_size == keep
    assert report.checkpoints_checked == checkpoints_ok


# -- inserting rows -----------------------------------------------------------------------------


async def test_copied_row_appended_after_the_end_is_detected(pristine: Path) -> None:
    """A copy of the last entry stored as seq n+1 does not link to entry n."""

    def mutate(conn: sqlite3.Connection) -> None:
        raw, stored = _row(conn, SIZE)
        conn.execute(
            "INSERT INTO entries(seq, entry, entry_hash, nodes) VALUES (?, ?, ?, ?)",
            (SIZE + 1, raw, stored, _nodes(conn, SIZE)),
        )

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, SIZE + 1, f"prev_hash does not link to entry {SIZE}")
    assert report.entries_checked == SIZE


async def test_row_inserted_at_seq_zero_is_detected(pristine: Path) -> None:
    """A copy of entry 1 stored at seq 0 is reported as an unexpected seq 0."""

    def mutate(conn: sqlite3.Connection) -> None:
        raw, stored = _row(conn, 1)
        conn.execute(
            "INSERT INTO entries(seq, entry, entry_hash, nodes) VALUES (0, ?, ?, x'')",
            (raw, stored),
        )

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, 0, "unexpected entry with seq 0")
    assert report.entries_checked == 0


def _shift_up_from(conn: sqlite3.Connection, k: int) -> None:
    """Renumber entries ``k..`` to ``k+1..`` (via negative seqs to avoid key clashes)."""
    conn.execute("UPDATE entries SET seq = -(seq + 1) WHERE seq >= ?", (k,))
    conn.execute("UPDATE entries SET seq = -seq WHERE seq < 0")


@pytest.mark.parametrize(
    ("k", "first_bad", "reason"),
    [
        # Entry 2 completes a Merkle node; the node kept from the original no longer matches.
        pytest.param(2, 2, "the Merkle nodes stored with entry 2 differ", id="completes-a-node"),
        # Leaf 4 completes no node; the displaced entry 5 (now seq 6) no longer links.
        pytest.param(5, 6, "prev_hash does not link to entry 5", id="completes-no-node"),
        # Leaf 0 completes no node; the displaced entry 1 (now seq 2) no longer links.
        pytest.param(1, 2, "prev_hash does not link to entry 1", id="at-the-start"),
    ],
)
async def test_forged_row_inserted_by_shifting_is_detected(
    pristine: Path, k: int, first_bad: int, reason: str
) -> None:
    """A well-formed, correctly chained forged entry squeezed in at seq k is still caught."""

    def mutate(conn: sqlite3.Connection) -> None:
        original, _ = _row(conn, k)
        nodes = _nodes(conn, k)
        prev = _row(conn, k - 1)[1] if k > 1 else bytes.fromhex(GENESIS_HEX)
        forged = _forge_entry(original, seq=k, prev_hash=prev)
        _shift_up_from(conn, k)
        conn.execute(
            "INSERT INTO entries(seq, entry, entry_hash, nodes) VALUES (?, ?, ?, ?)",
            (k, forged, _leaf_hash(forged), nodes),
        )

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, first_bad, reason)


@pytest.mark.parametrize("k", [1, 6, 13, SIZE])
async def test_duplicated_row_inserted_by_shifting_is_detected_after_it(
    pristine: Path, k: int
) -> None:
    """Duplicating entry k in place (shifting the rest up) is reported at seq k+1."""

    def mutate(conn: sqlite3.Connection) -> None:
        raw, stored = _row(conn, k)
        nodes = _nodes(conn, k)
        _shift_up_from(conn, k)
        conn.execute(
            "INSERT INTO entries(seq, entry, entry_hash, nodes) VALUES (?, ?, ?, ?)",
            (k, raw, stored, nodes),
        )

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, k + 1, f"prev_hash does not link to entry {k}")
    assert report.entries_checked == k


# -- swapping and rewriting ----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(pair=st.lists(st.integers(1, SIZE), min_size=2, max_size=2, unique=True))
async def test_swapped_rows_are_detected_at_first_swapped_seq(
    pristine: Path, pair: list[int]
) -> None:
    """Swapping two rows' entry and hash together is reported at the smaller seq."""
    a, b = sorted(pair)

    def mutate(conn: sqlite3.Connection) -> None:
        row_a, row_b = _row(conn, a), _row(conn, b)
        conn.execute("UPDATE entries SET entry = ?, entry_hash = ? WHERE seq = ?", (*row_b, a))
        conn.execute("UPDATE entries SET entry = ?, entry_hash = ? WHERE seq = ?", (*row_a, b))

    report = await _tamper_and_verify(pristine, mutate)
    _assert_detected(report, a, f"prev_hash does not link to entry {a - 1}")
    assert report.entries_checked == a - 1


def _rewrite_from(conn: sqlite3.Connection, start: int) -> None:
    """Forge entry ``start``, re-chain every later entry and rebuild all Merkle nodes.

    This is the strongest file-level attack: every hash, link and node is self-consistent.
    """
    prev = _row(conn, start - 1)[1] if start > 1 else bytes.fromhex(GENESIS_HEX)
    for seq in range(start, SIZE + 1):
        raw, _ = _row(conn, seq)
        obj = orjson.loads(raw)
        if seq == start:
            obj["actor"] = "mallory"
        obj["prev_hash"] = prev.hex()
        new = bytes(rfc8785.dumps(obj))
        prev = _leaf_hash(new)
        conn.execute("UPDATE entries SET entry = ?, entry_hash = ? WHERE seq = ?", (new, prev, seq))
    tree = CompactRange()
    for seq in range(1, SIZE + 1):
        nodes = tree.append(_row(conn, seq)[1])
        conn.execute("UPDATE entries SET nodes = ? WHERE seq = ?", (nodes, seq))


async def test_rewrite_of_unsigned_ledger_with_consistent_hashes_is_not_detectable(
    unsigned: Path,
) -> None:
    """Without checkpoints, a fully re-hashed rewrite verifies (the documented limit)."""
    report = await _tamper_and_verify(unsigned, lambda conn: _rewrite_from(conn, 13))
    assert report.valid, report
    assert report.entries_checked == SIZE


@pytest.mark.parametrize(
    ("start", "first_bad", "root_size"),
    [
        pytest.param(13, 11, 20, id="after-first-checkpoint"),
        pytest.param(4, 1, 10, id="before-first-checkpoint"),
    ],
)
async def test_rewrite_with_consistent_hashes_is_detected_by_the_checkpoint_root(
    pristine: Path, start: int, first_bad: int, root_size: int
) -> None:
    """A rewrite that re-chains and re-hashes everything is caught at the next signed root."""
    report = await _tamper_and_verify(pristine, lambda conn: _rewrite_from(conn, start))
    _assert_detected(
        report,
        first_bad,
        f"Merkle root at size {root_size} differs from the signed checkpoint: an entry in "
        f"{first_bad}..{root_size} was rewritten",
    )
    assert report.entries_checked == root_size
