"""Merkle tree hashing and proofs, RFC 6962 §2.1 with the verifiers of RFC 9162 §2.1.3 and §2.1.4.

Pure functions, bytes in and bytes out. A tree over ``n`` leaves is ``MTH(D[n])``:

* ``MTH({}) = SHA-256()``                                       (RFC 6962 §2.1)
* ``MTH({d0}) = SHA-256(0x00 || d0)``                           (leaf hash)
* ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``   with ``k`` the largest
  power of two smaller than ``n``                                (node hash)

Functions here take *leaf hashes* (already ``leaf_hash``-ed), and indexes are 0-based.

The proof generators are written once, as plans: :func:`inclusion_ranges` and
:func:`consistency_ranges` say which subtree ranges a proof consists of, and
:func:`perfect_parts` splits each range into complete (perfect) subtrees. The in-memory
functions below hash those parts from a list of leaves; the ledger's store looks the same
parts up in its table of stored subtree hashes, so proofs there cost O(log n) reads.

Verifiers never raise on a wrong proof; they return ``False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "consistency_proof",
    "consistency_ranges",
    "fold_parts",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "perfect_parts",
    "root_from_inclusion_proof",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256

Range = tuple[int, int]
"""A half-open range of leaf indexes ``[start, end)`` that is a subtree of RFC 6962's split."""

Part = tuple[int, int]
"""A perfect subtree ``(level, index)``: leaves ``[index << level, (index + 1) << level)``."""


def leaf_hash(data: bytes) -> bytes:
    """Hash of a leaf: ``SHA-256(0x00 || data)`` (RFC 6962 §2.1)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: ``SHA-256(0x01 || left || right)`` (RFC 6962 §2.1)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_parts(start: int, end: int) -> list[Part]:
    """Split ``[start, end)`` into perfect subtrees, largest (leftmost) first.

    Valid for every range that RFC 6962's recursive split produces: such a range starts at
    a multiple of the smallest power of two not below its size, so greedy splitting yields
    aligned subtrees.
    """
    parts: list[Part] = []
    while start < end:
        level = (end - start).bit_length() - 1
        parts.append((level, start >> level))
        start += 1 << level
    return parts


def fold_parts(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of a range's perfect parts (leftmost first) into the range's hash."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + h + acc).digest()
    return acc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtree ranges whose hashes form ``PATH(index, D[size])`` (RFC 6962 §2.1.1), in order."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    out: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()  # the path lists the deepest sibling first
    return out


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """The subtree ranges whose hashes form ``PROOF(size1, D[size2])``, in order.

    RFC 6962 §2.1.2.
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"consistency needs 0 <= size1 <= size2, got {size1} and {size2}")
    if size1 in (0, size2):
        return []
    out: list[Range] = []
    lo, hi, whole = 0, size2, True
    while True:
        if size1 == hi:  # SUBPROOF(m, D[m], b)
            if not whole:
                out.append((lo, hi))
            break
        k = _split(hi - lo)
        if size1 <= lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            whole = False
    out.reverse()
    return out


def _range_hasher(leaf_hashes: Sequence[bytes]) -> Callable[[Range], bytes]:
    def subtree(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return leaf_hashes[lo]
        k = _split(hi - lo)
        return _sha256(b"\x01" + subtree(lo, lo + k) + subtree(lo + k, hi)).digest()

    return lambda r: subtree(*r)


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH`` of the leaves; ``SHA-256(b"")`` for no leaves (RFC 6962 §2.1)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    # Fold a stack of perfect subtrees ("compact range"): O(n) hashes, O(log n) memory.
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        level = 0
        while stack and stack[-1][0] == level:
            h = _sha256(b"\x01" + stack.pop()[1] + h).digest()
            level += 1
        stack.append((level, h))
    return fold_parts([h for _, h in stack])


def inclusion_proof(index: int, size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of the first ``size`` leaves."""
    if size > len(leaf_hashes):
        raise ValueError(f"tree size {size} exceeds the {len(leaf_hashes)} leaves given")
    return list(map(_range_hasher(leaf_hashes), inclusion_ranges(index, size)))


def consistency_proof(size1: int, size2: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of ``size1`` leaves is a prefix of the tree of ``size2`` leaves."""
    if size2 > len(leaf_hashes):
        raise ValueError(f"tree size {size2} exceeds the {len(leaf_hashes)} leaves given")
    return list(map(_range_hasher(leaf_hashes), consistency_ranges(size1, size2)))


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2), or None if it is malformed."""
    if not 0 <= index < size or len(leaf_hash) != HASH_SIZE:
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0 or len(p) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True iff ``proof`` shows leaf ``index`` with ``leaf_hash`` is in the tree with ``root``."""
    try:
        computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    except (TypeError, ValueError):
        return False
    return computed is not None and computed == root


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> bool:
    """True iff ``proof`` shows the tree ``(size1, root1)`` is a prefix of ``(size2, root2)``.

    RFC 9162 §2.1.4.2, extended as usual for the trivial cases: equal sizes need an empty
    proof and equal roots; an empty first tree needs an empty proof.
    """
    try:
        return _verify_consistency(size1, size2, root1, root2, list(proof))
    except (TypeError, ValueError):
        return False


def _verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, path: list[bytes]
) -> bool:
    if not 0 <= size1 <= size2:
        return False
    if size1 == size2:
        return not path and root1 == root2
    if size1 == 0:
        return not path
    if not path or any(len(p) != HASH_SIZE for p in path):
        return False
    if size1 & (size1 - 1) == 0:  # step 2: size1 is a power of two
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2
