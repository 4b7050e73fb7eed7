"""Published RFC 6962 / RFC 9162 Merkle tree test vectors for ``grace.ledger.merkle``.

All hex values below are copied verbatim from these upstream files (SHA-256, RFC 6962
hashing: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right)):

* google/certificate-transparency, ``cpp/merkletree/merkle_tree_test.cc``
  (commit 0e901cacd1388fa16f78b184612f6cd16e5ceec1): ``kInputs`` (8 leaf inputs),
  ``kSHA256EmptyTreeHash``, ``kSHA256Roots`` (roots for sizes 1..8), ``kSHA256Paths``
  (inclusion proofs) and ``kSHA256Proofs`` (consistency proofs).
* transparency-dev/merkle, ``proof/verify_test.go``
  (commit 02194e9afb6c1d95b5381350007963aa70fff472, the last version in which the vectors
  are inline Go tables; later versions load JSON from ``testdata/``): ``leaves``, ``roots``,
  ``inclusionProofs`` and ``consistencyProofs``. Same values as the C++ file, plus the extra
  consistency proof (6, 7).
* transparency-dev/merkle, ``testonly/constants.go``
  (commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1): ``LeafInputs()``, ``NodeHashes()``
  (every complete-subtree hash, including the 8 leaf hashes), ``RootHashes()`` and
  ``EmptyRootHash()``.
* transparency-dev/merkle, ``testonly/reference_test.go``
  (commit 141d627eab770a7e9a2514f46a8b6338e6d90874): ``TestRefInclusionProof`` and
  ``TestRefConsistencyProof`` tables.

Index conventions: ``kSHA256Paths`` (C++) and ``inclusionProofs`` (Go ``verify_test.go``) give
1-based leaf numbers (the tests use ``leaf - 1``), and their ``{0, 0}`` row is a deliberately
invalid placeholder that upstream skips. ``TestRefInclusionProof`` is 0-based. Every leaf
index in this module is 0-based, as ``grace.ledger.merkle`` expects. Tree sizes are leaf
counts in all sources.

The mutated-proof cases mirror ``corruptInclusionProof`` / ``corruptConsistencyProof`` in
``proof/verify_test.go`` and ``VerifierCheck`` / ``VerifierConsistencyCheck`` in
``merkle_tree_test.cc``.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import pytest

from grace.ledger import merkle


def _h(hex_str: str) -> bytes:
    """Decode a hex string copied from an upstream vector table."""
    return bytes.fromhex(hex_str)


# kInputs (C++) / leaves (verify_test.go) / LeafInputs() (constants.go).
LEAF_INPUTS_HEX: Final[tuple[str, ...]] = (
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)
LEAF_INPUTS: Final[tuple[bytes, ...]] = tuple(_h(x) for x in LEAF_INPUTS_HEX)

# NodeHashes() level 0 (constants.go): leaf_hash(LEAF_INPUTS[i]).
LEAF_HASHES_HEX: Final[tuple[str, ...]] = (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
)

# NodeHashes() levels 1..3 (constants.go): level -> hashes left to right.
INTERNAL_NODE_HASHES_HEX: Final[dict[int, tuple[str, ...]]] = {
    1: (
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ),
    2: (
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ),
    3: ("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",),
}

# kSHA256EmptyTreeHash (C++) / sha256EmptyTreeHash (Go) / EmptyRootHash() (constants.go).
EMPTY_ROOT_HEX: Final = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# sha256SomeHash (verify_test.go): an arbitrary 32-byte value used to corrupt proofs.
SOME_HASH: Final = _h("abacaba000000000000000000000000000000000000000000060061e00123456")

# kSHA256Roots (C++) / roots (verify_test.go) / RootHashes() (constants.go): size -> root.
ROOTS_HEX: Final[dict[int, str]] = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


class InclusionVector(NamedTuple):
    """A published inclusion proof: 0-based leaf index, tree size and proof hashes."""

    leaf_index: int
    size: int
    proof_hex: tuple[str, ...]


class ConsistencyVector(NamedTuple):
    """A published consistency proof between tree sizes ``size1`` and ``size2``."""

    size1: int
    size2: int
    proof_hex: tuple[str, ...]


INCLUSION_VECTORS: Final[tuple[InclusionVector, ...]] = (
    # kSHA256Paths / inclusionProofs row {1, 1}: 1-based leaf 1 -> index 0.
    InclusionVector(0, 1, ()),
    # Row {1, 8}: 1-based leaf 1 -> index 0.
    InclusionVector(
        0,
        8,
        (
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    # Row {6, 8}: 1-based leaf 6 -> index 5.
    InclusionVector(
        5,
        8,
        (
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    # Row {3, 3}: 1-based leaf 3 -> index 2.
    InclusionVector(
        2,
        3,
        ("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",),
    ),
    # Row {2, 5}: 1-based leaf 2 -> index 1.
    InclusionVector(
        1,
        5,
        (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    # TestRefInclusionProof (reference_test.go, already 0-based) {index: 0, size: 2}.
    InclusionVector(
        0,
        2,
        ("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",),
    ),
    # TestRefInclusionProof {index: 1, size: 2}.
    InclusionVector(
        1,
        2,
        ("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",),
    ),
)

CONSISTENCY_VECTORS: Final[tuple[ConsistencyVector, ...]] = (
    # kSHA256Proofs (C++) / consistencyProofs (verify_test.go) / TestRefConsistencyProof.
    ConsistencyVector(1, 1, ()),
    ConsistencyVector(
        1,
        8,
        (
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    ConsistencyVector(
        6,
        8,
        (
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    ConsistencyVector(
        2,
        5,
        (
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    # Only in transparency-dev/merkle proof/verify_test.go (not in the C++ table).
    ConsistencyVector(
        6,
        7,
        (
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
)


def _leaf_hashes(size: int) -> list[bytes]:
    """Return the RFC 6962 leaf hashes of the first ``size`` published leaf inputs."""
    return [merkle.leaf_hash(data) for data in LEAF_INPUTS[:size]]


def _root(size: int) -> bytes:
    """Return the published root hash for a tree of ``size`` leaves (0 is the empty tree)."""
    return _h(EMPTY_ROOT_HEX) if size == 0 else _h(ROOTS_HEX[size])


def _proof(proof_hex: tuple[str, ...]) -> list[bytes]:
    """Decode a published proof into a list of hashes."""
    return [_h(x) for x in proof_hex]


def _flip_bit(proof: list[bytes], position: int, mask: int) -> list[bytes]:
    """Return a copy of ``proof`` with ``mask`` XORed into the first byte of one hash."""
    mutated = list(proof)
    mutated[position] = bytes([mutated[position][0] ^ mask]) + mutated[position][1:]
    return mutated


class InclusionProbe(NamedTuple):
    """Arguments for ``verify_inclusion``; ``leaf`` selects which published leaf is presented."""

    leaf: int
    leaf_index: int
    size: int
    proof: list[bytes]
    root: bytes


class ConsistencyProbe(NamedTuple):
    """Arguments for ``verify_consistency``."""

    size1: int
    size2: int
    root1: bytes
    root2: bytes
    proof: list[bytes]


def _inclusion_vector_id(vector: InclusionVector) -> str:
    """Name an inclusion vector by its 0-based index and tree size."""
    return f"index{vector.leaf_index}-size{vector.size}"


def _consistency_vector_id(vector: ConsistencyVector) -> str:
    """Name a consistency vector by its two tree sizes."""
    return f"size{vector.size1}-to-{vector.size2}"


def _corrupt_inclusion(vector: InclusionVector) -> list[tuple[str, InclusionProbe]]:
    """Build the upstream corruptInclusionProof probes for one published vector."""
    index, size = vector.leaf_index, vector.size
    proof = _proof(vector.proof_hex)
    root = _root(size)
    other_leaf = (index + 1) % len(LEAF_INPUTS)
    probes: list[tuple[str, InclusionProbe]] = [
        ("index-minus-1", InclusionProbe(index, index - 1, size, proof, root)),
        ("index-plus-1", InclusionProbe(index, index + 1, size, proof, root)),
        ("index-xor-2", InclusionProbe(index, index ^ 2, size, proof, root)),
        ("size-times-2", InclusionProbe(index, index, size * 2, proof, root)),
        ("size-halved", InclusionProbe(index, index, size // 2, proof, root)),
        ("wrong-leaf", InclusionProbe(other_leaf, index, size, proof, root)),
        ("empty-tree-root", InclusionProbe(index, index, size, proof, _h(EMPTY_ROOT_HEX))),
        ("random-root", InclusionProbe(index, index, size, proof, SOME_HASH)),
        ("extra-trailing-hash", InclusionProbe(index, index, size, [*proof, SOME_HASH], root)),
        ("trailing-root", InclusionProbe(index, index, size, [*proof, root], root)),
        ("trailing-empty-bytes", InclusionProbe(index, index, size, [*proof, b""], root)),
        ("extra-leading-hash", InclusionProbe(index, index, size, [SOME_HASH, *proof], root)),
        ("leading-root", InclusionProbe(index, index, size, [root, *proof], root)),
        ("leading-empty-bytes", InclusionProbe(index, index, size, [b"", *proof], root)),
    ]
    for position in range(len(proof)):
        flipped = _flip_bit(proof, position, 0x08)
        probes.append(
            (f"flipped-bit-proof{position}", InclusionProbe(index, index, size, flipped, root))
        )
    if proof:
        probes.append(("dropped-last-hash", InclusionProbe(index, index, size, proof[:-1], root)))
        probes.append(("dropped-first-hash", InclusionProbe(index, index, size, proof[1:], root)))
    if len(proof) > 1:
        inserted = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(("inserted-hash", InclusionProbe(index, index, size, inserted, root)))
    return probes


def _corrupt_consistency(vector: ConsistencyVector) -> list[tuple[str, ConsistencyProbe]]:
    """Build the upstream corruptConsistencyProof probes for one published vector."""
    size1, size2 = vector.size1, vector.size2
    proof = _proof(vector.proof_hex)
    root1, root2 = _root(size1), _root(size2)
    probes: list[tuple[str, ConsistencyProbe]] = [
        ("size1-plus-1", ConsistencyProbe(size1 + 1, size2, root1, root2, proof)),
        ("size1-xor-2", ConsistencyProbe(size1 ^ 2, size2, root1, root2, proof)),
        ("size2-times-2", ConsistencyProbe(size1, size2 * 2, root1, root2, proof)),
        ("size2-halved", ConsistencyProbe(size1, size2 // 2, root1, root2, proof)),
        ("wrong-root2", ConsistencyProbe(size1, size2, root1, SOME_HASH, proof)),
        ("extra-trailing-hash", ConsistencyProbe(size1, size2, root1, root2, [*proof, SOME_HASH])),
        ("trailing-root2", ConsistencyProbe(size1, size2, root1, root2, [*proof, root2])),
        ("trailing-empty-bytes", ConsistencyProbe(size1, size2, root1, root2, [*proof, b""])),
    ]
    if not proof:
        # Upstream corrupts only non-trivial proofs; for size1 == size2 a non-empty proof or
        # mismatched roots must still be rejected, which the probes above already cover.
        return probes
    probes += [
        # size1 - 1 is only a corruption for a non-empty proof: (0, size2) with an empty proof
        # is trivially consistent upstream.
        ("size1-minus-1", ConsistencyProbe(size1 - 1, size2, root1, root2, proof)),
        ("wrong-root1", ConsistencyProbe(size1, size2, SOME_HASH, root2, proof)),
        ("swapped-roots", ConsistencyProbe(size1, size2, root2, root1, proof)),
        ("empty-proof", ConsistencyProbe(size1, size2, root1, root2, [])),
        ("trailing-root1", ConsistencyProbe(size1, size2, root1, root2, [*proof, root1])),
        ("extra-leading-hash", ConsistencyProbe(size1, size2, root1, root2, [SOME_HASH, *proof])),
        ("leading-empty-bytes", ConsistencyProbe(size1, size2, root1, root2, [b"", *proof])),
        ("leading-root1", ConsistencyProbe(size1, size2, root1, root2, [root1, *proof])),
        ("leading-root2", ConsistencyProbe(size1, size2, root1, root2, [root2, *proof])),
        ("leading-proof0", ConsistencyProbe(size1, size2, root1, root2, [proof[0], *proof])),
        ("dropped-last-hash", ConsistencyProbe(size1, size2, root1, root2, proof[:-1])),
        ("dropped-first-hash", ConsistencyProbe(size1, size2, root1, root2, proof[1:])),
    ]
    for position in range(len(proof)):
        flipped = _flip_bit(proof, position, 0x10)
        probes.append(
            (f"flipped-bit-proof{position}", ConsistencyProbe(size1, size2, root1, root2, flipped))
        )
    return probes


INCLUSION_PROBES: Final[list[object]] = [
    pytest.param(probe, id=f"{_inclusion_vector_id(vector)}-{name}")
    for vector in INCLUSION_VECTORS
    for name, probe in _corrupt_inclusion(vector)
]

CONSISTENCY_PROBES: Final[list[object]] = [
    pytest.param(probe, id=f"{_consistency_vector_id(vector)}-{name}")
    for vector in CONSISTENCY_VECTORS
    for name, probe in _corrupt_consistency(vector)
]


def test_empty_tree_root_is_sha256_of_empty_string() -> None:
    """The root of a tree with no leaves equals the published empty-tree hash."""
    assert merkle.root_hash([]) == _h(EMPTY_ROOT_HEX)


@pytest.mark.parametrize(("position", "expected_hex"), list(enumerate(LEAF_HASHES_HEX)))
def test_leaf_hash_matches_published_leaf_node_hash(position: int, expected_hex: str) -> None:
    """Hashing each published leaf input yields the published level-0 node hash."""
    assert merkle.leaf_hash(LEAF_INPUTS[position]) == _h(expected_hex)


@pytest.mark.parametrize(
    ("level", "position"),
    [
        (level, pos)
        for level, hashes in INTERNAL_NODE_HASHES_HEX.items()
        for pos in range(len(hashes))
    ],
)
def test_node_hash_matches_published_internal_node_hash(level: int, position: int) -> None:
    """Hashing two published child hashes yields the published parent node hash."""
    children = LEAF_HASHES_HEX if level == 1 else INTERNAL_NODE_HASHES_HEX[level - 1]
    left, right = _h(children[2 * position]), _h(children[2 * position + 1])
    assert merkle.node_hash(left, right) == _h(INTERNAL_NODE_HASHES_HEX[level][position])


@pytest.mark.parametrize(("size", "expected_hex"), sorted(ROOTS_HEX.items()))
def test_root_hash_matches_published_root_for_each_size(size: int, expected_hex: str) -> None:
    """The root over the first ``size`` published leaves equals the published root."""
    assert merkle.root_hash(_leaf_hashes(size)) == _h(expected_hex)


@pytest.mark.parametrize("vector", INCLUSION_VECTORS, ids=_inclusion_vector_id)
def test_inclusion_proof_matches_published_proof(vector: InclusionVector) -> None:
    """The generated inclusion proof equals the published proof hash for hash."""
    leaves = _leaf_hashes(vector.size)
    generated = merkle.inclusion_proof(vector.leaf_index, vector.size, leaves)
    assert generated == _proof(vector.proof_hex)


@pytest.mark.parametrize("vector", INCLUSION_VECTORS, ids=_inclusion_vector_id)
def test_published_inclusion_proof_verifies(vector: InclusionVector) -> None:
    """The published inclusion proof verifies the published leaf against the published root."""
    leaf = merkle.leaf_hash(LEAF_INPUTS[vector.leaf_index])
    proof = _proof(vector.proof_hex)
    root = _root(vector.size)
    assert merkle.verify_inclusion(leaf, vector.leaf_index, vector.size, proof, root) is True


@pytest.mark.parametrize("vector", CONSISTENCY_VECTORS, ids=_consistency_vector_id)
def test_consistency_proof_matches_published_proof(vector: ConsistencyVector) -> None:
    """The generated consistency proof equals the published proof hash for hash."""
    leaves = _leaf_hashes(vector.size2)
    generated = merkle.consistency_proof(vector.size1, vector.size2, leaves)
    assert generated == _proof(vector.proof_hex)


@pytest.mark.parametrize("vector", CONSISTENCY_VECTORS, ids=_consistency_vector_id)
def test_published_consistency_proof_verifies(vector: ConsistencyVector) -> None:
    """The published consistency proof verifies between the two published roots."""
    root1, root2 = _root(vector.size1), _root(vector.size2)
    proof = _proof(vector.proof_hex)
    assert merkle.verify_consistency(vector.size1, vector.size2, root1, root2, proof) is True


@pytest.mark.parametrize("probe", INCLUSION_PROBES)
def test_verify_inclusion_rejects_mutated_proof(probe: InclusionProbe) -> None:
    """A corrupted proof, index, size, leaf or root makes inclusion verification return False."""
    leaf = merkle.leaf_hash(LEAF_INPUTS[probe.leaf])
    result = merkle.verify_inclusion(leaf, probe.leaf_index, probe.size, probe.proof, probe.root)
    assert result is False


@pytest.mark.parametrize(
    ("index", "size"),
    [(0, 0), (0, 1), (1, 0), (2, 1)],
    ids=["index0-size0", "index0-size1", "index1-size0", "index2-size1"],
)
def test_verify_inclusion_rejects_published_invalid_probes(index: int, size: int) -> None:
    """The upstream invalid (index, size) probes with an empty proof never verify."""
    empty_root = _h(EMPTY_ROOT_HEX)
    assert merkle.verify_inclusion(SOME_HASH, index, size, [], empty_root) is False
    assert merkle.verify_inclusion(b"", index, size, [], empty_root) is False
    assert merkle.verify_inclusion(SOME_HASH, index, size, [], b"") is False


@pytest.mark.parametrize("probe", CONSISTENCY_PROBES)
def test_verify_consistency_rejects_mutated_proof(probe: ConsistencyProbe) -> None:
    """A corrupted proof, size or root makes consistency verification return False."""
    result = merkle.verify_consistency(
        probe.size1, probe.size2, probe.root1, probe.root2, probe.proof
    )
    assert result is False


@pytest.mark.parametrize(
    "probe",
    [
        pytest.param(ConsistencyProbe(1, 0, _root(1), _root(0), []), id="time-travel-1-to-0"),
        pytest.param(ConsistencyProbe(2, 1, _root(2), _root(1), []), id="time-travel-2-to-1"),
        pytest.param(ConsistencyProbe(1, 2, _root(1), _root(2), []), id="empty-proof-1-to-2"),
        pytest.param(ConsistencyProbe(1, 1, _root(1), _root(2), []), id="same-size-roots-differ"),
        pytest.param(
            ConsistencyProbe(1, 1, _root(1), _root(1), [_h(EMPTY_ROOT_HEX)]),
            id="same-size-proof-not-empty",
        ),
        pytest.param(
            ConsistencyProbe(0, 1, _root(0), _root(1), [_h(EMPTY_ROOT_HEX)]),
            id="from-empty-proof-not-empty",
        ),
    ],
)
def test_verify_consistency_rejects_published_invalid_probes(probe: ConsistencyProbe) -> None:
    """The upstream invalid size/root/proof combinations never verify."""
    result = merkle.verify_consistency(
        probe.size1, probe.size2, probe.root1, probe.root2, probe.proof
    )
    assert result is False
