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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from grace.errors import ProofError
from grace.ledger._codec import GENESIS_HASH_HEX
from grace.ledger._tree import CompactRange
from grace.ledger.checkpoint import Checkpoint, NoteVerifier
from grace.ledger.entry import VerifyReport
from grace.ledger.merkle import EMPTY_ROOT, fold_parts

__all__ = [
    "CHUNK_BITS",
    "ChunkChecker",
    "Joiner",
    "Progress",
    "check_checkpoints",
    "failed_report",
    "verify_chunk",
    "verify_connection",
]

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
    checker = ChunkChecker(lo, hi, checkpoint_sizes, chunk)
    cur = conn.execute(
        "SELECT seq, entry, entry_hash, nodes FROM entries WHERE seq > ? AND seq <= ? ORDER BY seq",
        (lo, hi),
    )
    while (batch := cur.fetchmany(_FETCH)) and checker.feed(batch):
        pass
    return checker.result()


def _column_bytes(value: object) -> bytes | None:
    """A stored query column (UTF-8 bytes or text) as the entry's JSON string, or None."""
    try:
        text = value.decode() if type(value) is bytes else value
        return orjson.dumps(text) if type(text) is str else None
    except (UnicodeDecodeError, orjson.JSONEncodeError):
        return None


class ChunkChecker:
    """Checks the rows of one chunk ``(lo, hi]``, fed in seq order, batch by batch.

    Rows are ``(seq, entry, entry_hash, nodes)``; with ``columns`` they carry the stored
    query columns ``subsystem, actor, action, ts`` too (PostgreSQL), which must be exactly
    what the entry's bytes say.
    """

    __slots__ = (
        "_chunk",
        "_columns",
        "_expected",
        "_failure",
        "_first_prev",
        "_hash",
        "_hi",
        "_lo",
        "_parts",
        "_prev_hex",
        "_spill",
        "_tree",
        "_wanted",
    )

    def __init__(
        self,
        lo: int,
        hi: int,
        checkpoint_sizes: tuple[int, ...],
        chunk: int,
        *,
        columns: bool = False,
    ) -> None:
        self._lo = lo
        self._hi = hi
        self._chunk = chunk
        self._columns = columns
        self._tree = CompactRange()
        self._wanted = set(checkpoint_sizes)
        self._parts: dict[int, list[bytes]] = {}
        self._expected = lo + 1
        self._prev_hex = GENESIS_HASH_HEX if lo == 0 else b""
        self._first_prev = b""
        self._spill = b""
        self._hash = b""
        self._failure: tuple[int, str] | None = None

    def _fail(self, seq: int, reason: str) -> bool:
        self._failure = (seq, reason)
        return False

    def feed(self, batch: Sequence[Sequence[Any]]) -> bool:
        """Check the next rows; False once a check failed (stop feeding then)."""
        if self._failure is not None:
            return False
        sha256 = hashlib.sha256
        hexlify = binascii.hexlify
        lo = self._lo
        tree = self._tree
        prev_hex = self._prev_hex
        expected = self._expected
        try:
            for row in batch:
                seq, raw, stored, nodes = row[0], row[1], row[2], row[3]
                if seq != expected:
                    return self._fail(
                        expected, f"entry {expected} is missing (next stored entry is {seq})"
                    )
                if type(raw) is not bytes:
                    return self._fail(seq, "the entry column is not a blob")
                h = sha256(b"\x00" + raw).digest()
                if h != stored:
                    return self._fail(seq, "entry bytes do not match the stored entry hash")
                i = raw.rfind(_PREV)
                if i < 0:
                    return self._fail(seq, "the entry has no prev_hash")
                if seq == lo + 1:
                    self._first_prev = raw[i + 13 : i + 77]
                    if lo:  # the link into a later chunk is checked by the caller
                        prev_hex = self._first_prev
                if raw[i + 13 : i + 77] != prev_hex:
                    return self._fail(seq, f"prev_hash does not link to entry {seq - 1}'s hash")
                j = raw.rfind(_SEQ)
                k = raw.find(b",", j + 7)
                if j < 0 or raw[j + 7 : k] != str(seq).encode():
                    return self._fail(
                        seq, f"the entry stored at seq {seq} says it is entry {raw[j + 7 : k]!r}"
                    )
                created = tree.append(h)
                if created != nodes:
                    # Only the last entry of a full chunk completes nodes above the chunk.
                    if seq - lo != self._chunk or nodes[: len(created)] != created:
                        return self._fail(
                            seq,
                            f"the Merkle nodes stored with entry {seq} differ from the ones it "
                            "completes",
                        )
                    self._spill = nodes[len(created) :]
                if self._columns and not _columns_match(raw, row):
                    return self._fail(
                        seq,
                        f"the query columns stored with entry {seq} (subsystem, actor, action, "
                        "ts) differ from its bytes",
                    )
                if seq in self._wanted:
                    self._parts[seq] = list(tree.hashes)
                prev_hex = hexlify(h)
                self._hash = h
                expected = seq + 1
        finally:
            self._prev_hex = prev_hex
            self._expected = expected
        return True

    def result(self) -> ChunkResult:
        """What the chunk proved (call after the last batch, or after a failure)."""
        lo, hi = self._lo, self._hi
        if self._failure is None and self._expected <= hi:
            self._fail(
                self._expected, f"entry {self._expected} is missing (the log should reach {hi})"
            )
        if self._failure is not None:
            return ChunkResult(
                lo=lo,
                checked=self._expected - 1 - lo,
                failure=self._failure,
                first_prev_hex=self._first_prev,
            )
        tree = self._tree
        return ChunkResult(
            lo=lo,
            checked=hi - lo,
            first_prev_hex=self._first_prev,
            last_hash=self._hash,
            root=tree.hashes[0] if tree.size == self._chunk else b"",
            spill=self._spill,
            checkpoint_parts=self._parts,
            tail_parts=list(tree.hashes),
        )


def _columns_match(raw: bytes, row: Sequence[Any]) -> bool:
    """The entry starts with its action and actor and ends with its subsystem and timestamp.

    Canonical entries are ``{"action":…,"actor":…,"payload":…,…,"subsystem":…,
    "timestamp":"…"}`` (RFC 8785 key order), so the stored columns can be checked against
    the bytes without parsing the payload.
    """
    subsystem, actor, action, ts = (_column_bytes(row[i]) for i in (4, 5, 6, 7))
    if subsystem is None or actor is None or action is None or ts is None:
        return False
    head = b'{"action":' + action + b',"actor":' + actor + b',"payload":'
    tail = b',"subsystem":' + subsystem + b',"timestamp":' + ts + b"}"
    return raw.startswith(head) and raw.endswith(tail)


def failed_report(checked: int, total: int, cps: int, seq: int | None, reason: str) -> VerifyReport:
    """A report of a log that failed a check."""
    return VerifyReport(
        valid=False,
        entries_checked=checked,
        tree_size=total,
        checkpoints_checked=cps,
        first_bad_seq=seq,
        reason=reason,
    )


def check_checkpoints(
    rows: Iterable[Sequence[Any]], verifier: NoteVerifier, origin: str, total: int
) -> list[Checkpoint] | VerifyReport:
    """Parse and check stored checkpoints ``(tree_size, note)`` in size order."""
    checkpoints: list[Checkpoint] = []
    for size_col, note in rows:
        n = len(checkpoints)
        try:
            cp = Checkpoint.from_note(note)
        except ProofError as e:
            return failed_report(0, total, n, None, f"checkpoint row {size_col}: {e}")
        if cp.origin != origin:
            return failed_report(
                0,
                total,
                n,
                None,
                f"checkpoint at size {cp.tree_size} names origin {cp.origin!r}, the ledger is "
                f"{origin!r}",
            )
        if cp.tree_size != size_col:
            return failed_report(
                0, total, n, None, f"checkpoint row {size_col} holds a note for size {cp.tree_size}"
            )
        if not verifier.verify(note):
            return failed_report(
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
    found = check_checkpoints(
        conn.execute("SELECT tree_size, note FROM checkpoints ORDER BY tree_size"),
        verifier,
        origin,
        total,
    )
    if isinstance(found, VerifyReport):
        return found
    checkpoints = found
    if low < 1:
        return failed_report(0, total, 0, low, f"unexpected entry with seq {low}")

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
    joiner = Joiner(total, checkpoints, progress)
    for result in results:
        failed = joiner.add(result)
        if failed is not None:
            return failed
    return joiner.finish()


class Joiner:
    """Combines chunk results, added in seq order, into one report."""

    __slots__ = (
        "_checkpoints",
        "_cp_index",
        "_last",
        "_prev_hash",
        "_progress",
        "_total",
        "_upper",
        "_verified_upto",
    )

    def __init__(
        self, total: int, checkpoints: list[Checkpoint], progress: Progress | None
    ) -> None:
        self._total = total
        self._checkpoints = checkpoints
        self._progress = progress
        self._upper = CompactRange()  # a tree whose leaves are the chunk roots
        self._prev_hash: bytes | None = None
        self._cp_index = 0
        self._verified_upto = 0
        while self._cp_index < len(checkpoints) and checkpoints[self._cp_index].tree_size == 0:
            self._cp_index += 1
        self._last: ChunkResult | None = None

    def add(self, result: ChunkResult) -> VerifyReport | None:
        """Join the next chunk; a report when the log failed a check (stop then)."""
        total, checkpoints = self._total, self._checkpoints
        lo = result.lo
        prev_hash = self._prev_hash
        link = GENESIS_HASH_HEX if prev_hash is None else binascii.hexlify(prev_hash)
        boundary_ok = result.first_prev_hex == link
        if result.failure is not None and (boundary_ok or result.failure[0] == lo + 1):
            seq, reason = result.failure
            return failed_report(lo + result.checked, total, self._cp_index, seq, reason)
        if not boundary_ok:
            reason = (
                f"prev_hash does not link to entry {lo}'s hash"
                if lo
                else "the first entry's prev_hash is not the genesis hash"
            )
            return failed_report(lo, total, self._cp_index, lo + 1, reason)
        # Checkpoints inside this chunk: their roots fold the full chunks before it with the
        # chunk's own perfect subtrees.
        while (
            self._cp_index < len(checkpoints)
            and checkpoints[self._cp_index].tree_size <= lo + result.checked
        ):
            cp = checkpoints[self._cp_index]
            root = fold_parts(self._upper.hashes + result.checkpoint_parts[cp.tree_size])
            if root != cp.root_hash:
                upto = self._verified_upto
                return failed_report(
                    cp.tree_size,
                    total,
                    self._cp_index,
                    upto + 1,
                    f"Merkle root at size {cp.tree_size} differs from the signed checkpoint: an "
                    f"entry in {upto + 1}..{cp.tree_size} was rewritten with its hashes",
                )
            self._verified_upto = cp.tree_size
            self._cp_index += 1
        if result.root:
            above = self._upper.append(result.root)
            if above != result.spill:
                end = lo + result.checked
                return failed_report(
                    end - 1,
                    total,
                    self._cp_index,
                    end,
                    f"the Merkle nodes stored with entry {end} differ from the ones it completes",
                )
        self._prev_hash = result.last_hash
        self._last = result
        if self._progress is not None:
            self._progress(lo + result.checked, total)
        return None

    def finish(self) -> VerifyReport:
        """The report once every chunk was added."""
        total, checkpoints = self._total, self._checkpoints
        if self._cp_index < len(checkpoints):
            signed = checkpoints[-1].tree_size
            return failed_report(
                total,
                total,
                self._cp_index,
                total + 1,
                f"the log ends at entry {total} but a signed checkpoint covers {signed} entries: "
                "entries were removed from the end",
            )
        parts = list(self._upper.hashes)
        last = self._last
        if last is not None and not last.root:  # a partial last chunk
            parts += last.tail_parts
        return VerifyReport(
            valid=True,
            entries_checked=total,
            tree_size=total,
            checkpoints_checked=len(checkpoints),
            root_hash=(fold_parts(parts) if parts else EMPTY_ROOT).hex(),
        )
