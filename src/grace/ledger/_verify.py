"""Full verification of a stored ledger: every byte that matters is recomputed.

For each row, in seq order, from one read snapshot:

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
"""

from __future__ import annotations

import binascii
import hashlib
import sqlite3
from collections.abc import Callable

from grace.errors import ProofError
from grace.ledger._codec import GENESIS_HASH_HEX
from grace.ledger._tree import CompactRange
from grace.ledger.checkpoint import Checkpoint, NoteVerifier
from grace.ledger.entry import VerifyReport

__all__ = ["Progress", "verify_connection"]

Progress = Callable[[int, int], None]
"""Called as ``progress(entries_checked, total)`` every few thousand entries."""

_PREV = b'"prev_hash":"'
_SEQ = b',"seq":'
_BATCH = 8192


def _fail(checked: int, size: int, cps: int, seq: int | None, reason: str) -> VerifyReport:
    return VerifyReport(
        valid=False,
        entries_checked=checked,
        tree_size=size,
        checkpoints_checked=cps,
        first_bad_seq=seq,
        reason=reason,
    )


def verify_connection(
    conn: sqlite3.Connection,
    verifier: NoteVerifier,
    origin: str,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify the ledger behind ``conn`` (a connection no one else uses meanwhile)."""
    conn.execute("BEGIN")  # one read snapshot for all tables
    try:
        return _verify(conn, verifier, origin, progress)
    finally:
        conn.execute("ROLLBACK")


def _verify(
    conn: sqlite3.Connection, verifier: NoteVerifier, origin: str, progress: Progress | None
) -> VerifyReport:
    total = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()[0])
    rows = conn.execute("SELECT tree_size, note FROM checkpoints ORDER BY tree_size").fetchall()
    checkpoints: list[Checkpoint] = []
    for size_col, note in rows:
        try:
            cp = Checkpoint.from_note(note)
        except ProofError as e:
            return _fail(0, total, len(checkpoints), None, f"checkpoint row {size_col}: {e}")
        if cp.origin != origin:
            return _fail(
                0,
                total,
                len(checkpoints),
                None,
                f"checkpoint at size {cp.tree_size} names origin {cp.origin!r}, "
                f"the ledger is {origin!r}",
            )
        if cp.tree_size != size_col:
            return _fail(
                0,
                total,
                len(checkpoints),
                None,
                f"checkpoint row {size_col} holds a note for size {cp.tree_size}",
            )
        if not verifier.verify(note):
            return _fail(
                0,
                total,
                len(checkpoints),
                None,
                f"checkpoint at size {cp.tree_size} has no valid signature by the ledger key",
            )
        checkpoints.append(cp)

    tree = CompactRange()
    sha256 = hashlib.sha256
    hexlify = binascii.hexlify
    prev_hex = GENESIS_HASH_HEX
    expected = 1
    cp_index = 0
    verified_upto = 0  # size of the last checkpoint whose root matched
    while cp_index < len(checkpoints) and checkpoints[cp_index].tree_size == 0:
        cp_index += 1
    next_cp = checkpoints[cp_index].tree_size if cp_index < len(checkpoints) else -1

    cur = conn.execute("SELECT seq, entry, entry_hash, nodes FROM entries ORDER BY seq")
    while batch := cur.fetchmany(_BATCH):
        for seq, raw, stored, nodes in batch:
            if seq != expected:
                if seq > expected:
                    return _fail(
                        expected - 1,
                        total,
                        cp_index,
                        expected,
                        f"entry {expected} is missing (next stored entry is {seq})",
                    )
                return _fail(expected - 1, total, cp_index, seq, f"unexpected entry with seq {seq}")
            if type(raw) is not bytes:
                return _fail(seq - 1, total, cp_index, seq, "the entry column is not a blob")
            h = sha256(b"\x00" + raw).digest()
            if h != stored:
                return _fail(
                    seq - 1, total, cp_index, seq, "entry bytes do not match the stored entry hash"
                )
            i = raw.rfind(_PREV)
            if i < 0 or raw[i + 13 : i + 77] != prev_hex:
                return _fail(
                    seq - 1,
                    total,
                    cp_index,
                    seq,
                    f"prev_hash does not link to entry {seq - 1}'s hash",
                )
            j = raw.rfind(_SEQ)
            k = raw.find(b",", j + 7)
            if j < 0 or raw[j + 7 : k] != str(seq).encode():
                return _fail(
                    seq - 1,
                    total,
                    cp_index,
                    seq,
                    f"the entry stored at seq {seq} says it is entry {raw[j + 7 : k]!r}",
                )
            if tree.append(h) != nodes:
                return _fail(
                    seq - 1,
                    total,
                    cp_index,
                    seq,
                    f"the Merkle nodes stored with entry {seq} differ from the ones it completes",
                )
            if seq == next_cp:
                cp = checkpoints[cp_index]
                if tree.root() != cp.root_hash:
                    return _fail(
                        seq,
                        total,
                        cp_index,
                        verified_upto + 1,
                        f"Merkle root at size {seq} differs from the signed checkpoint: an "
                        f"entry in {verified_upto + 1}..{seq} was rewritten with its hashes",
                    )
                verified_upto = seq
                cp_index += 1
                next_cp = checkpoints[cp_index].tree_size if cp_index < len(checkpoints) else -1
            prev_hex = hexlify(h)
            expected = seq + 1
        if progress is not None:
            progress(expected - 1, total)

    size = expected - 1
    if cp_index < len(checkpoints):
        signed = checkpoints[-1].tree_size
        return _fail(
            size,
            total,
            cp_index,
            size + 1,
            f"the log ends at entry {size} but a signed checkpoint covers {signed} entries: "
            "entries were removed from the end",
        )
    return VerifyReport(
        valid=True,
        entries_checked=size,
        tree_size=size,
        checkpoints_checked=len(checkpoints),
        root_hash=tree.root().hex(),
    )
