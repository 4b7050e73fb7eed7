"""Hypothesis properties of the RFC 6962 Merkle functions."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from grace.ledger import merkle
from grace.ledger._tree import CompactRange, node_location

MAX_LEAVES = 300
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_LEAVES)]


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 §2.1's recursive definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_LEAVES))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(1, MAX_LEAVES))
    return draw(st.integers(1, size2)), size2


def test_root_hash_matches_recursive_definition_for_every_size_up_to_300() -> None:
    """The stack-based root equals the RFC's recursive MTH for sizes 0..300."""
    for n in range(MAX_LEAVES + 1):
        assert merkle.root_hash(LEAVES[:n]) == reference_root(LEAVES[:n])


def test_compact_range_nodes_are_found_where_node_location_says() -> None:
    """Appending leaves yields every prefix root, and each perfect subtree's hash sits in the
    nodes of the entry node_location names, at the offset it names."""
    tree = CompactRange()
    stored: dict[int, bytes] = {}
    for n, leaf in enumerate(LEAVES[:130], start=1):
        stored[n] = tree.append(leaf)
        assert tree.root() == merkle.root_hash(LEAVES[:n])
    for level in range(1, 8):
        for index in range(130 >> level):
            start = index << level
            expected = merkle.root_hash(LEAVES[start : start + (1 << level)])
            seq, offset = node_location(level, index)
            assert stored[seq][offset : offset + 32] == expected


@settings(max_examples=400)
@given(index_and_size())
def test_every_inclusion_proof_verifies(pos: tuple[int, int]) -> None:
    """Any (index, size) inclusion proof verifies against the root of that size."""
    index, size = pos
    proof = merkle.inclusion_proof(index, size, LEAVES)
    root = merkle.root_hash(LEAVES[:size])
    assert merkle.verify_inclusion(LEAVES[index], index, size, proof, root)


@settings(max_examples=400)
@given(two_sizes())
def test_every_consistency_proof_verifies(sizes: tuple[int, int]) -> None:
    """Any (m, n) consistency proof verifies between the two roots."""
    m, n = sizes
    proof = merkle.consistency_proof(m, n, LEAVES)
    assert merkle.verify_consistency(
        m, n, merkle.root_hash(LEAVES[:m]), merkle.root_hash(LEAVES[:n]), proof
    )


@settings(max_examples=400)
@given(index_and_size(), st.data())
def test_a_wrong_inclusion_proof_never_verifies(pos: tuple[int, int], data: st.DataObject) -> None:
    """Flipping a bit, dropping or adding a hash, or moving the leaf makes the proof fail."""
    index, size = pos
    proof = merkle.inclusion_proof(index, size, LEAVES)
    root = merkle.root_hash(LEAVES[:size])
    mutation = data.draw(st.sampled_from(["flip", "drop", "extra", "index", "leaf", "root"]))
    leaf, at = LEAVES[index], index
    if mutation == "flip" and proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        h = bytearray(proof[i])
        h[bit // 8] ^= 1 << (bit % 8)
        proof[i] = bytes(h)
    elif mutation == "drop" and proof:
        del proof[data.draw(st.integers(0, len(proof) - 1))]
    elif mutation == "extra":
        proof.insert(data.draw(st.integers(0, len(proof))), LEAVES[0])
    elif mutation == "index" and size > 1:
        at = data.draw(st.integers(0, size - 1).filter(lambda j: j != index))
    elif mutation == "leaf":
        leaf = merkle.leaf_hash(b"not the entry")
    else:
        root = merkle.leaf_hash(b"not the root")
    if (mutation in ("flip", "drop") and not proof and size == 1) or (
        mutation == "index" and size == 1
    ):
        return  # nothing to mutate in a one-leaf tree's empty proof
    assert merkle.verify_inclusion(leaf, at, size, proof, root) is False


@settings(max_examples=400)
@given(two_sizes(), st.data())
def test_a_wrong_consistency_proof_never_verifies(
    sizes: tuple[int, int], data: st.DataObject
) -> None:
    """A changed hash, a dropped or extra hash, or a wrong old root makes consistency fail."""
    m, n = sizes
    proof = merkle.consistency_proof(m, n, LEAVES)
    root1, root2 = merkle.root_hash(LEAVES[:m]), merkle.root_hash(LEAVES[:n])
    mutation = data.draw(st.sampled_from(["flip", "drop", "extra", "root1", "root2"]))
    if mutation == "flip" and proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        h = bytearray(proof[i])
        h[data.draw(st.integers(0, 31))] ^= 0x10
        proof[i] = bytes(h)
    elif mutation == "drop" and proof:
        del proof[data.draw(st.integers(0, len(proof) - 1))]
    elif mutation == "extra":
        proof.append(LEAVES[1])
    elif mutation == "root1":
        root1 = merkle.leaf_hash(b"forged")
    else:
        root2 = merkle.leaf_hash(b"forged")
    if mutation in ("flip", "drop") and not proof:
        return  # m == n: the proof is empty, nothing to mutate
    assert merkle.verify_consistency(m, n, root1, root2, proof) is False


@given(st.binary(max_size=40), st.integers(-5, 5), st.integers(-5, 5), st.lists(st.binary()))
def test_verifiers_return_false_on_garbage_instead_of_raising(
    leaf: bytes, index: int, size: int, proof: list[bytes]
) -> None:
    """Malformed inputs (bad lengths, negative positions) give False, never an exception."""
    malformed = len(leaf) != 32 or index < 0 or size <= index or any(len(p) != 32 for p in proof)
    inclusion = merkle.verify_inclusion(leaf, index, size, proof, leaf)
    assert isinstance(inclusion, bool)
    if malformed:
        assert inclusion is False
    consistency = merkle.verify_consistency(index, size, leaf, leaf, proof)
    assert isinstance(consistency, bool)
    if index < 0 or size < index or (proof and any(len(p) != 32 for p in proof)):
        assert consistency is False
