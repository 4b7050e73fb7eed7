"""Offline proof bundles: everything needed to check one entry without the database.

A bundle holds the entry's canonical bytes, its position, an RFC 6962 inclusion proof in
the tree of ``tree_size`` entries, and a signed checkpoint; when the checkpoint is larger
than ``tree_size`` it also carries a consistency proof from ``tree_size`` to the
checkpoint's size. :func:`verify_bundle` needs only the bundle and the log's public key.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from grace.errors import ProofError
from grace.ledger import merkle
from grace.ledger.checkpoint import Checkpoint, NoteVerifier

__all__ = ["BUNDLE_FORMAT", "BundleCheck", "ProofBundle", "verify_bundle"]

BUNDLE_FORMAT = "grace-ledger-proof/v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofBundle:
    """An entry with the proofs tying it to a signed checkpoint."""

    seq: int
    tree_size: int
    entry: bytes
    """The entry's canonical JSON bytes, exactly as hashed."""
    inclusion_proof: tuple[bytes, ...]
    checkpoint: Checkpoint
    consistency_proof: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The bundle as a JSON-ready dict (the decoded entry is included for readers)."""
        return {
            "format": BUNDLE_FORMAT,
            "seq": self.seq,
            "leaf_index": self.seq - 1,
            "tree_size": self.tree_size,
            "entry": orjson.loads(self.entry),
            "entry_canonical": base64.b64encode(self.entry).decode(),
            "leaf_hash": merkle.leaf_hash(self.entry).hex(),
            "inclusion_proof": [h.hex() for h in self.inclusion_proof],
            "checkpoint": self.checkpoint.note,
            "consistency_proof": [h.hex() for h in self.consistency_proof],
        }

    @classmethod
    def from_json(cls, data: Any) -> ProofBundle:
        """Parse a bundle; :class:`ProofError` names the field that is wrong."""
        if not isinstance(data, dict):
            raise ProofError("proof bundle must be a JSON object")
        if data.get("format") != BUNDLE_FORMAT:
            raise ProofError(
                f"proof bundle format must be {BUNDLE_FORMAT!r}, got {data.get('format')!r}"
            )

        def integer(name: str) -> int:
            value = data.get(name)
            if type(value) is not int or value < 0:
                raise ProofError(f"proof bundle field {name!r} must be a non-negative integer")
            return value

        def hashes(name: str) -> tuple[bytes, ...]:
            value = data.get(name, [])
            if not isinstance(value, list):
                raise ProofError(f"proof bundle field {name!r} must be a list of hex hashes")
            try:
                return tuple(bytes.fromhex(h) for h in value)
            except (TypeError, ValueError) as e:
                raise ProofError(f"proof bundle field {name!r} holds a non-hex hash") from e

        try:
            entry = base64.b64decode(data.get("entry_canonical", ""), validate=True)
        except (binascii.Error, TypeError, ValueError) as e:
            raise ProofError("proof bundle field 'entry_canonical' is not base64") from e
        note = data.get("checkpoint")
        if not isinstance(note, str):
            raise ProofError("proof bundle field 'checkpoint' must be the signed note text")
        return cls(
            seq=integer("seq"),
            tree_size=integer("tree_size"),
            entry=entry,
            inclusion_proof=hashes("inclusion_proof"),
            checkpoint=Checkpoint.from_note(note),
            consistency_proof=hashes("consistency_proof"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleCheck:
    """Result of checking a bundle offline."""

    valid: bool
    reason: str


def verify_bundle(bundle: ProofBundle, verifier: NoteVerifier) -> BundleCheck:
    """Check a bundle against the log's public key, with no access to the log."""
    cp = bundle.checkpoint
    if cp.origin != verifier.name:
        return BundleCheck(
            valid=False,
            reason=f"checkpoint origin {cp.origin!r} is not the key's log {verifier.name!r}",
        )
    if not verifier.verify(cp.note):
        return BundleCheck(
            valid=False, reason="checkpoint signature does not verify with the public key"
        )
    try:
        claimed = orjson.loads(bundle.entry)
    except orjson.JSONDecodeError:
        return BundleCheck(valid=False, reason="entry bytes are not JSON")
    if not isinstance(claimed, dict) or claimed.get("seq") != bundle.seq:
        return BundleCheck(valid=False, reason=f"entry bytes are not entry {bundle.seq}")
    if not 1 <= bundle.seq <= bundle.tree_size <= cp.tree_size:
        return BundleCheck(
            valid=False,
            reason=f"positions do not fit: seq {bundle.seq}, tree size {bundle.tree_size}, "
            f"checkpoint size {cp.tree_size}",
        )
    root = merkle.root_from_inclusion_proof(
        merkle.leaf_hash(bundle.entry), bundle.seq - 1, bundle.tree_size, bundle.inclusion_proof
    )
    if root is None:
        return BundleCheck(
            valid=False, reason="inclusion proof has the wrong shape for its position"
        )
    if bundle.tree_size == cp.tree_size:
        if root != cp.root_hash:
            return BundleCheck(
                valid=False, reason="inclusion proof does not lead to the signed root"
            )
    elif not merkle.verify_consistency(
        bundle.tree_size, cp.tree_size, root, cp.root_hash, bundle.consistency_proof
    ):
        return BundleCheck(
            valid=False,
            reason=f"consistency proof from size {bundle.tree_size} to the signed size "
            f"{cp.tree_size} does not verify",
        )
    return BundleCheck(
        valid=True,
        reason=f"entry {bundle.seq} is in the log {cp.origin!r} signed at size {cp.tree_size}",
    )
