"""The growing edge of the Merkle tree, and where its stored subtree hashes live.

A :class:`CompactRange` holds the roots of the perfect subtrees that make up a tree of
``size`` leaves — one per set bit of ``size``, largest first — so appending a leaf costs
O(1) amortised hashes and the root costs O(log n).

Every interior node is stored once, in the row of the entry whose append completed it:
that row's ``nodes`` column is the concatenation of the nodes it completed, level 1
first. :func:`node_location` says which row and offset hold a perfect subtree's hash, so a
proof looks up O(log n) rows by primary key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from grace.errors import LedgerFormatError
from grace.ledger.merkle import EMPTY_ROOT, Part, fold_parts

__all__ = ["CompactRange", "node_location", "part_locations", "pick_parts"]

_sha256 = hashlib.sha256


def node_location(level: int, index: int) -> tuple[int, int]:
    """``(seq, byte offset)`` of the interior node at ``level >= 1``, ``index``.

    The node covers leaves ``[index << level, (index + 1) << level)`` and is completed by
    appending its last leaf, entry ``seq = (index + 1) << level``; that append creates
    levels 1, 2, … in order, 32 bytes each.
    """
    return (index + 1) << level, (level - 1) * 32


def part_locations(parts: Iterable[Part]) -> dict[Part, tuple[int, int]]:
    """Where each perfect subtree's hash is stored: ``(seq, offset)``, offset -1 for a leaf.

    A leaf is its entry's ``entry_hash``; an interior node a slice of some entry's ``nodes``.
    """
    where: dict[Part, tuple[int, int]] = {}
    for part in parts:
        level, index = part
        where[part] = (index + 1, -1) if level == 0 else node_location(level, index)
    return where


def pick_parts(
    where: Mapping[Part, tuple[int, int]],
    found: Mapping[int, tuple[bytes, bytes]],
    location: object,
) -> dict[Part, bytes]:
    """The hashes at ``where`` from rows ``found`` (seq -> (entry_hash, nodes)).

    Raises :class:`LedgerFormatError` naming the subtree whose data is missing or malformed.
    """
    out: dict[Part, bytes] = {}
    for part, (seq, offset) in where.items():
        row = found.get(seq)
        value = None
        if row is not None:
            value = row[0] if offset < 0 else row[1][offset : offset + 32]
        if type(value) is not bytes or len(value) != 32:
            raise LedgerFormatError(
                f"{location}: Merkle data for subtree (level, index) {part} is missing at "
                f"entry {seq}; run `grace audit verify`"
            )
        out[part] = value
    return out


class CompactRange:
    """Perfect-subtree roots covering leaves ``[0, size)``; append-only."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None) -> None:
        hashes = hashes or []
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of size {size} has {size.bit_count()} perfect parts")
        self.size = size
        self.hashes = hashes

    def copy(self) -> CompactRange:
        """An independent copy (for work that may be rolled back)."""
        return CompactRange(self.size, list(self.hashes))

    def append(self, leaf: bytes) -> bytes:
        """Add a leaf hash; return the interior nodes it completes, concatenated (maybe b"")."""
        n = self.size
        hashes = self.hashes
        h = leaf
        created = b""
        while n & 1:
            h = _sha256(b"\x01" + hashes.pop() + h).digest()
            created += h
            n >>= 1
        hashes.append(h)
        self.size += 1
        return created

    def root(self) -> bytes:
        """The RFC 6962 root hash of the first ``size`` leaves."""
        return fold_parts(self.hashes) if self.hashes else EMPTY_ROOT
