"""Full verification of a stored ledger: every byte that matters is recomputed.

For each row, in seq order:

1. seq is exactly previous + 1 (detects deleted, inserted and reordered rows);
2. ``entry_hash == SHA-256(0x00 || entry)`` (detects any change to an entry or its hash);
3. the ``prev_hash`` inside the entry is the previous ``entry_hash`` and the ``seq`` inside
   it is the row's seq (detects rows moved or rewritten together with their hash);
4. the interior Merkle nodes the entry completes equal its stored ``nodes`` (proofs
   served from the store are therefore correct);
5. when the tree reaches a checkpoint's size, its root equals the signed root.

Every checkpoint's note must carry a valid signature by the ledger's key and its origin;
a checkpoint larger than the log means entries were cut off the end. Rewriting the log
end to end with a fresh chain is only detectable through checkpoints — the reason they are
signed and meant to be kept elsewhere too.

The log is checked in chunks of ``2**CHUNK_BITS`` entries aligned to their size, so every
Merkle node below the chunk level lies inside one chunk. :func:`verify_chunk` checks one
chunk on its own, with its own connection; :func:`verify_connection` joins the chunks:
chain links across chunk borders, nodes above the chunk level, checkpoint roots. The first
failure in seq order is reported. Chunks are independent so that they can be checked in
parallel; today they run one after another in this process, because worker processes on
a two-core machine gained only 1.3x and brought the start-method hazards of
``multiprocessing`` into every program that verifies (see docs/architecture.md).
"""

from __future__ import annotations

import binascii
import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from grace.errors import ProofError
from grace.ledger._codec import GENESIS_HASH_HEX
from grace.ledger._tree import CompactRange
from grace.ledger.checkpoint import Checkpoint, NoteVerifier
from grace.ledger.entry import VerifyReport
from grace.ledger.merkle import EMPTY_ROOT, fold_parts

__all__ = ["CHUNK_BITS", "Progress", "verify_chunk", "verify_connection"]

Progress = Callable[[int, int], None]
"""Called as ``progress(entries_checked, total)`` as chunks complete."""

CHUNK_BITS = 16

_PREV = b'"prev_hash":"'
_SEQ = b',"seq":'
_FETCH = 8192


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkResult:
    """What one chunk ``(lo, hi]`` of seqs proved, and what only the caller can check."""

    lo: int
    checked: int
    """Entries that passed every check, from ``lo + 1`` on."""
    failure: tuple[int, str] | None = None
    first_prev_hex: bytes = b""
    """The ``prev_hash`` written in entry ``lo + 1`` (checked against the previous chunk)."""
    last_hash: bytes = b""
    root: bytes = b""
    """Root of the chunk's subtree, when the chunk is full."""
    spill: bytes = b""
    """Nodes stored with the chunk's last entry above the chunk level."""
    checkpoint_parts: dict[int, list[bytes]] = field(default_factory=dict)
    """For each checkpoint size inside the chunk, the perfect subtrees of ``(lo, size]``."""
    tail_parts: list[bytes] = field(default_factory=list)
    """The perfect subtrees of the whole chunk ``(lo, hi]``."""


def _connect(db_path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True)
    conn.text_factory = _lenient_text
    return conn


def verify_chunk(
    db_path: str,
    lo: int,
    hi: int,
    checkpoint_sizes: tuple[int, ...] = (),
    chunk_bits: int = CHUNK_BITS,
) -> ChunkResult:
    """Check entries ``lo + 1 .. hi`` (``lo`` a multiple of the chunk size)."""
    conn = _connect(db_path)
    try:
        return _verify_chunk(conn, lo, hi, checkpoint_sizes, 1 << chunk_bits)
    finally:
        conn.close()


def _verify_chunk(
    conn: sqlite3.Connection, lo: int, hi: int, checkpoint_sizes: tuple[int, ...], chunk: int
) -> ChunkResult:
    sha256 = hashlib.sha256
    hexlify = binascii.hexlify
    tree = CompactRange()
    wanted = set(checkpoint_sizes)
    parts: dict[int, list[bytes]] = {}
    expected = lo + 1
    prev_hex = GENESIS_HASH_HEX if lo == 0 else b""
    first_prev = b""
    spill = b""
    h = b""

    def fail(seq: int, reason: str) -> ChunkResult:
        return ChunkResult(
            lo=lo, checked=expected - 1 - lo, failure=(seq, reason), first_prev_hex=first_prev
        )

    cur = conn.execute(
        "SELECT seq, entry, entry_hash, nodes FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq",
        (lo, hi),
    )
    while batch := cur.fetchmany(_FETCH):
        for seq, raw, stored, nodes in batch:
            if seq != expected:
                return fail(expected, f"entry {expected} is missing (next stored entry is {seq})")
            if type(raw) is not bytes:
                return fail(seq, "the entry column is not a blob")
            h = sha256(b"\x00" + raw).digest()
            if h != stored:
                return fail(seq, "entry bytes do not match the stored entry hash")
            i = raw.rfind(_PREV)
            if i < 0:
                return fail(seq, "the entry has no prev_hash")
            if seq == lo + 1:
                first_prev = raw[i + 13 : i + 77]
                if lo:  # the link into a later chunk is checked by the caller
                    prev_hex = first_prev
            if raw[i + 13 : i + 77] != prev_hex:
                return fail(seq, f"prev_hash does not link to entry {seq - 1}'s hash")
            j = raw.rfind(_SEQ)
            k = raw.find(b",", j + 7)
            if j < 0 or raw[j + 7 : k] != str(seq).encode():
                return fail(
                    seq, f"the entry stored at seq {seq} says it is entry {raw[j + 7 : k]!r}"
                )
            created = tree.append(h)
            if created != nodes:
                # Only the last entry of a full chunk completes nodes above the chunk.
                if seq - lo != chunk or nodes[: len(created)] != created:
                    return fail(
                        seq,
                        f"the Merkle nodes stored with entry {seq} differ from the ones it "
                        "completes",
                    )
                spill = nodes[len(created) :]
            if seq in wanted:
                parts[seq] = list(tree.hashes)
            prev_hex = hexlify(h)
            expected = seq + 1
    if expected <= hi:
        return fail(expected, f"entry {expected} is missing (the log should reach {hi})")
    return ChunkResult(
        lo=lo,
        checked=hi - lo,
        first_prev_hex=first_prev,
        last_hash=h,
        root=tree.hashes[0] if tree.size == chunk else b"",
        spill=spill,
        checkpoint_parts=parts,
        tail_parts=list(tree.hashes),
    )


def _report(checked: int, total: int, cps: int, seq: int | None, reason: str) -> VerifyReport:
    return VerifyReport(
        valid=False,
        entries_checked=checked,
        tree_size=total,
        checkpoints_checked=cps,
        first_bad_seq=seq,
        reason=reason,
    )


def _read_checkpoints(
    conn: sqlite3.Connection, verifier: NoteVerifier, origin: str, total: int
) -> list[Checkpoint] | VerifyReport:
    checkpoints: list[Checkpoint] = []
    rows = conn.execute("SELECT tree_size, note FROM checkpoints ORDER BY tree_size").fetchall()
    for size_col, note in rows:
        n = len(checkpoints)
        try:
            cp = Checkpoint.from_note(note)
        except ProofError as e:
            return _report(0, total, n, None, f"checkpoint row {size_col}: {e}")
        if cp.origin != origin:
            return _report(
                0,
                total,
                n,
                None,
                f"checkpoint at size {cp.tree_size} names origin {cp.origin!r}, the ledger is "
                f"{origin!r}",
            )
        if cp.tree_size != size_col:
            return _report(
                0, total, n, None, f"checkpoint row {size_col} holds a note for size {cp.tree_size}"
            )
        if not verifier.verify(note):
            return _report(
                0,
                total,
                n,
                None,
                f"checkpoint at size {cp.tree_size} has no valid signature by the ledger key",
            )
        checkpoints.append(cp)
    return checkpoints


def verify_connection(
    conn: sqlite3.Connection,
    db_path: str,
    verifier: NoteVerifier,
    origin: str,
    progress: Progress | None = None,
    *,
    chunk_bits: int = CHUNK_BITS,
) -> VerifyReport:
    """Verify the ledger at ``db_path``; ``conn`` reads its size and checkpoints."""
    row = conn.execute(
        "SELECT COALESCE(MIN(seq), 1), COALESCE(MAX(seq), 0) FROM entries"
    ).fetchone()
    low, total = int(row[0]), int(row[1])
    found = _read_checkpoints(conn, verifier, origin, total)
    if isinstance(found, VerifyReport):
        return found
    checkpoints = found
    if low < 1:
        return _report(0, total, 0, low, f"unexpected entry with seq {low}")

    chunk = 1 << chunk_bits
    bounds = [(lo, min(lo + chunk, total)) for lo in range(0, total, chunk)]
    inside = {
        lo: tuple(cp.tree_size for cp in checkpoints if lo < cp.tree_size <= hi)
        for lo, hi in bounds
    }
    results: Iterator[ChunkResult] = (
        verify_chunk(db_path, lo, hi, inside[lo], chunk_bits) for lo, hi in bounds
    )
    return _join(results, total, checkpoints, progress)


def _join(
    results: Iterator[ChunkResult],
    total: int,
    checkpoints: list[Checkpoint],
    progress: Progress | None,
) -> VerifyReport:
    """Combine chunk results in seq order into one report."""
    upper = CompactRange()  # a tree whose leaves are the chunk roots
    prev_hash: bytes | None = None
    cp_index = 0
    verified_upto = 0
    while cp_index < len(checkpoints) and checkpoints[cp_index].tree_size == 0:
        cp_index += 1
    last: ChunkResult | None = None
    for result in results:
        lo = result.lo
        link = GENESIS_HASH_HEX if prev_hash is None else binascii.hexlify(prev_hash)
        boundary_ok = result.first_prev_hex == link
        if result.failure is not None and (boundary_ok or result.failure[0] == lo + 1):
            seq, reason = result.failure
            return _report(lo + result.checked, total, cp_index, seq, reason)
        if not boundary_ok:
            reason = (
                f"prev_hash does not link to entry {lo}'s hash"
                if lo
                else "the first entry's prev_hash is not the genesis hash"
            )
            return _report(lo, total, cp_index, lo + 1, reason)
        # Checkpoints inside this chunk: their roots fold the full chunks before it with the
        # chunk's own perfect subtrees.
        while (
            cp_index < len(checkpoints) and checkpoints[cp_index].tree_size <= lo + result.checked
        ):
            cp = checkpoints[cp_index]
            root = fold_parts(upper.hashes + result.checkpoint_parts[cp.tree_size])
            if root != cp.root_hash:
                return _report(
                    cp.tree_size,
                    total,
                    cp_index,
                    verified_upto + 1,
                    f"Merkle root at size {cp.tree_size} differs from the signed checkpoint: an "
                    f"entry in {verified_upto + 1}..{cp.tree_size} was rewritten with its hashes",
                )
            verified_upto = cp.tree_size
            cp_index += 1
        if result.root:
            above = upper.append(result.root)
            if above != result.spill:
                end = lo + result.checked
                return _report(
                    end - 1,
                    total,
                    cp_index,
                    end,
                    f"the Merkle nodes stored with entry {end} differ from the ones it completes",
                )
        prev_hash = result.last_hash
        last = result
        if progress is not None:
            progress(lo + result.checked, total)
    if cp_index < len(checkpoints):
        signed = checkpoints[-1].tree_size
        return _report(
            total,
            total,
            cp_index,
            total + 1,
            f"the log ends at entry {total} but a signed checkpoint covers {signed} entries: "
            "entries were removed from the end",
        )
    parts = list(upper.hashes)
    if last is not None and not last.root:  # a partial last chunk
        parts += last.tail_parts
    return VerifyReport(
        valid=True,
        entries_checked=total,
        tree_size=total,
        checkpoints_checked=len(checkpoints),
        root_hash=(fold_parts(parts) if parts else EMPTY_ROOT).hex(),
    )
