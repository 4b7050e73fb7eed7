"""The growing edge of the Merkle tree, and where its stored subtree hashes live.

A :class:`CompactRange` holds the roots of the perfect subtrees that make up a tree of
``size`` leaves — one per set bit of ``size``, largest first — so appending a leaf costs
O(1) amortised hashes and the root costs O(log n). Every interior node is stored once,
in creation order; :func:`node_id` says where a perfect subtree's hash sits in that order,
so a proof looks up O(log n) rows by primary key.
"""

from __future__ import annotations

import hashlib

from grace.ledger.merkle import EMPTY_ROOT, fold_parts

__all__ = ["CompactRange", "node_id"]

_sha256 = hashlib.sha256


def node_id(level: int, index: int) -> int:
    """Creation-order id (0-based) of the interior node at ``level >= 1``, ``index``.

    The node is completed by appending leaf ``i = ((index + 1) << level) - 1``; before that
    append ``i - popcount(i)`` interior nodes exist, and the append creates levels 1, 2, …
    in order.
    """
    i = ((index + 1) << level) - 1
    return i - i.bit_count() + level - 1


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

    def append(self, leaf: bytes, created: list[bytes]) -> None:
        """Add a leaf hash; append every interior node it completes to ``created``."""
        n = self.size
        hashes = self.hashes
        h = leaf
        while n & 1:
            h = _sha256(b"\x01" + hashes.pop() + h).digest()
            created.append(h)
            n >>= 1
        hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        """The RFC 6962 root hash of the first ``size`` leaves."""
        return fold_parts(self.hashes) if self.hashes else EMPTY_ROOT

    @property
    def node_count(self) -> int:
        """How many interior nodes a tree of this size has stored."""
        return self.size - self.size.bit_count()
