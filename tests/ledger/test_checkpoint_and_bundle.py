"""Signed notes, verifier keys and proof bundles reject malformed input with clear errors."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from grace.errors import KeyFileError, ProofError
from grace.ledger import Checkpoint, NoteSigner, NoteVerifier, ProofBundle, load_verifier
from grace.ledger.bundle import BUNDLE_FORMAT
from grace.ledger.checkpoint import load_or_create_signing_key

ROOT = bytes(range(32))


@pytest.fixture
def signer() -> NoteSigner:
    """A signer for the log example.org/log."""
    return NoteSigner("example.org/log", Ed25519PrivateKey.generate())


def test_signed_note_round_trips_and_names_the_key(signer: NoteSigner) -> None:
    """A signed checkpoint parses back to the same fields and verifies."""
    cp = signer.sign_checkpoint(42, ROOT)
    parsed = Checkpoint.from_note(cp.note)
    assert (parsed.origin, parsed.tree_size, parsed.root_hash) == ("example.org/log", 42, ROOT)
    assert signer.verifier.verify(cp.note)


def test_note_signed_by_another_key_or_name_fails(signer: NoteSigner) -> None:
    """Another key, or the same key under another name, does not verify the note."""
    cp = signer.sign_checkpoint(1, ROOT)
    other = NoteSigner("example.org/log", Ed25519PrivateKey.generate())
    assert not other.verifier.verify(cp.note)
    renamed = NoteVerifier("example.org/other", signer.verifier._key)
    assert not renamed.verify(cp.note)
    assert not signer.verifier.verify(cp.note.replace("\n\n", "\n"))


@pytest.mark.parametrize(
    ("note", "problem"),
    [
        ("origin\n1\n", "no blank line"),
        ("origin\n1\n\n", "needs origin, tree size and root"),
        ("\n1\nAAAA\n\n", "origin line is empty"),
        ("o\n01\n" + base64.b64encode(ROOT).decode() + "\n\n", "not a decimal"),
        ("o\n-1\n" + base64.b64encode(ROOT).decode() + "\n\n", "not a decimal"),
        ("o\n1\n!!!!\n\n", "not base64"),
        ("o\n1\n" + base64.b64encode(b"short").decode() + "\n\n", "expected 32"),
    ],
)
def test_malformed_checkpoints_name_the_problem(note: str, problem: str) -> None:
    """Each malformed checkpoint body raises ProofError saying what is wrong."""
    with pytest.raises(ProofError, match=problem):
        Checkpoint.from_note(note)


def test_vkey_round_trips_and_rejects_tampering(signer: NoteSigner) -> None:
    """A vkey parses back to a working verifier; a wrong key id or algorithm is refused."""
    vkey = signer.verifier.vkey
    assert NoteVerifier.from_vkey(vkey).verify(signer.sign_checkpoint(3, ROOT).note)
    name, key_id, key = vkey.split("+", 2)
    with pytest.raises(ProofError, match="key id does not match"):
        NoteVerifier.from_vkey(f"{name}+00000000+{key}")
    with pytest.raises(ProofError, match="not an Ed25519 key"):
        NoteVerifier.from_vkey(f"{name}+{key_id}+{base64.b64encode(b'x' * 33).decode()}")
    with pytest.raises(ProofError, match="name\\+keyid\\+base64key"):
        NoteVerifier.from_vkey("just-a-name")
    with pytest.raises(ProofError, match="malformed"):
        NoteVerifier.from_vkey(f"{name}+zz+{key}")


def test_pem_public_keys_need_ed25519_and_a_name(signer: NoteSigner) -> None:
    """A PEM key works with a name; an EC key or a missing name is refused."""
    pem = signer.verifier.pem
    assert load_verifier(pem, name="example.org/log").verify(signer.sign_checkpoint(1, ROOT).note)
    with pytest.raises(ProofError, match="carries no name"):
        load_verifier(pem)
    ec_pem = (
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ProofError, match="not an Ed25519"):
        load_verifier(ec_pem, name="x")
    with pytest.raises(ProofError, match="PEM is malformed"):
        load_verifier("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----", name="x")


def test_signing_key_file_problems_are_key_file_errors(tmp_path: Path) -> None:
    """A non-PEM, a non-Ed25519 or an exposed key file raises KeyFileError naming the file."""
    path = tmp_path / "ledger.key"
    path.write_text("not a key")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_or_create_signing_key(path, "log")
    path.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_or_create_signing_key(path, "log")
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_signing_key(path, "log")
    os.chmod(tmp_path, 0o500)
    try:
        if os.geteuid() != 0:  # root ignores directory permissions
            with pytest.raises(KeyFileError, match="cannot create"):
                load_or_create_signing_key(tmp_path / "new.key", "log")
    finally:
        os.chmod(tmp_path, 0o700)


def _bundle_json(signer: NoteSigner) -> dict[str, Any]:
    entry = b'{"seq":1}'
    from grace.ledger import merkle

    cp = signer.sign_checkpoint(1, merkle.leaf_hash(entry))
    return ProofBundle(seq=1, tree_size=1, entry=entry, inclusion_proof=(), checkpoint=cp).to_json()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"format": "other/v9"}, "format must be"),
        ({"seq": -1}, "'seq' must be a non-negative integer"),
        ({"tree_size": "3"}, "'tree_size' must be a non-negative integer"),
        ({"inclusion_proof": "abc"}, "must be a list of hex hashes"),
        ({"inclusion_proof": ["zz"]}, "holds a non-hex hash"),
        ({"entry_canonical": "***"}, "not base64"),
        ({"checkpoint": 5}, "must be the signed note text"),
    ],
)
def test_malformed_bundles_name_the_field(
    signer: NoteSigner, change: dict[str, Any], problem: str
) -> None:
    """Each malformed bundle field raises ProofError naming it."""
    data = _bundle_json(signer) | change
    with pytest.raises(ProofError, match=problem):
        ProofBundle.from_json(data)


def test_bundle_must_be_an_object() -> None:
    """A JSON array is not a bundle."""
    with pytest.raises(ProofError, match="must be a JSON object"):
        ProofBundle.from_json([])


def test_bundle_format_is_stable(signer: NoteSigner) -> None:
    """The bundle says its format and carries the decoded entry for readers."""
    data = _bundle_json(signer)
    assert data["format"] == BUNDLE_FORMAT
    assert data["entry"] == {"seq": 1}
    assert data["leaf_index"] == 0
