"""Signed checkpoints in the C2SP formats (c2sp.org/tlog-checkpoint, c2sp.org/signed-note).

A checkpoint body is three lines::

    <origin>
    <tree size, decimal>
    <root hash, standard base64>

and the signed note appends a blank line and one signature line per signer::

    — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>

The key id is the first four bytes of ``SHA-256(name || "\\n" || 0x01 || public key)``; the
signature covers the body including its final newline. The public key is shared as a
verifier key string ``<name>+<key id hex>+<base64(0x01 || public key)>``.

Invariants: a :class:`Checkpoint` only exists parsed from, or made into, a note whose
body matches its fields; signature checking is separate (:meth:`NoteVerifier.verify`)
and never raises for a bad signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from grace.errors import KeyFileError, ProofError

__all__ = [
    "Checkpoint",
    "NoteSigner",
    "NoteVerifier",
    "load_or_create_signing_key",
    "load_verifier",
]

_ALG_ED25519 = b"\x01"
_SIG_PREFIX = "\u2014 "  # em dash and a space (c2sp.org/signed-note)


def _key_id(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ALG_ED25519 + public_raw).digest()[:4]


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ValueError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A tree head: origin, size and root, with the signed note that carries them."""

    origin: str
    tree_size: int
    root_hash: bytes
    note: str

    @staticmethod
    def body(origin: str, tree_size: int, root_hash: bytes) -> str:
        """The checkpoint body text (c2sp.org/tlog-checkpoint)."""
        return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"

    @classmethod
    def from_note(cls, note: str) -> Checkpoint:
        """Parse a signed note's body; raises :class:`ProofError` naming what is malformed."""
        body, sep, _ = note.partition("\n\n")
        if not sep:
            raise ProofError("checkpoint note has no blank line before its signatures")
        lines = body.split("\n")
        if len(lines) < 3:
            raise ProofError("checkpoint body needs origin, tree size and root hash lines")
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        if not origin:
            raise ProofError("checkpoint origin line is empty")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise ProofError(f"checkpoint tree size {size_text!r} is not a decimal number")
        try:
            root = base64.b64decode(root_text, validate=True)
        except ValueError as e:  # binascii.Error, or non-ASCII text
            raise ProofError(f"checkpoint root hash {root_text!r} is not base64") from e
        if len(root) != 32:
            raise ProofError(f"checkpoint root hash is {len(root)} bytes, expected 32")
        return cls(origin=origin, tree_size=int(size_text), root_hash=root, note=note)


class NoteSigner:
    """Signs checkpoint notes with an Ed25519 key under a key name (the log's origin)."""

    __slots__ = ("_key", "_key_id", "name", "verifier")

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._key = key
        public_raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._key_id = _key_id(name, public_raw)
        self.verifier = NoteVerifier(name, key.public_key())

    def sign_checkpoint(self, tree_size: int, root_hash: bytes) -> Checkpoint:
        """A checkpoint for the tree, signed; the origin is the key name."""
        body = Checkpoint.body(self.name, tree_size, root_hash)
        sig = self._key.sign(body.encode())
        line = f"{_SIG_PREFIX}{self.name} {base64.b64encode(self._key_id + sig).decode()}\n"
        return Checkpoint(
            origin=self.name, tree_size=tree_size, root_hash=root_hash, note=f"{body}\n{line}"
        )


class NoteVerifier:
    """Checks a signed note against one named Ed25519 public key."""

    __slots__ = ("_key", "_key_id", "name", "public_raw")

    def __init__(self, name: str, key: Ed25519PublicKey) -> None:
        self.name = _check_name(name)
        self._key = key
        self.public_raw = key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._key_id = _key_id(name, self.public_raw)

    @property
    def vkey(self) -> str:
        """The verifier key string ``name+keyid+base64(0x01||key)`` (c2sp.org/signed-note)."""
        encoded = base64.b64encode(_ALG_ED25519 + self.public_raw).decode()
        return f"{self.name}+{self._key_id.hex()}+{encoded}"

    @property
    def pem(self) -> str:
        """The public key as SubjectPublicKeyInfo PEM."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key string; :class:`ProofError` if malformed or not Ed25519."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise ProofError("verifier key must look like name+keyid+base64key")
        name, id_hex, key_b64 = parts
        try:
            raw = base64.b64decode(key_b64, validate=True)
            key_id = bytes.fromhex(id_hex)
        except (binascii.Error, ValueError) as e:
            raise ProofError(f"verifier key is malformed: {e}") from e
        if len(raw) != 33 or raw[:1] != _ALG_ED25519:
            raise ProofError("verifier key is not an Ed25519 key (algorithm byte 0x01, 32 bytes)")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier._key_id != key_id:
            raise ProofError("verifier key id does not match its name and key")
        return verifier

    def verify(self, note: str) -> bool:
        """True iff ``note`` carries a valid signature by this key under this name."""
        body, sep, sigs = note.partition("\n\n")
        if not sep:
            return False
        try:
            message = (body + "\n").encode()
        except UnicodeEncodeError:  # undecodable bytes read back from a tampered store
            return False
        for line in sigs.split("\n"):
            if not line.startswith(_SIG_PREFIX):
                continue
            name, _, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
            if name != self.name:
                continue
            try:
                blob = base64.b64decode(sig_b64, validate=True)
            except ValueError:  # binascii.Error, or non-ASCII text
                return False
            if base64.b64encode(blob).decode() != sig_b64:
                return False  # non-canonical base64 (e.g. altered padding bits): not our note
            if len(blob) != 68 or blob[:4] != self._key_id:
                continue
            try:
                self._key.verify(blob[4:], message)
            except InvalidSignature:
                return False
            return True
        return False


def load_verifier(text: str, *, name: str | None = None) -> NoteVerifier:
    """A verifier from a vkey string or an Ed25519 PEM public key (then ``name`` is needed)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as e:
            raise ProofError(f"public key PEM is malformed: {e}") from e
        if not isinstance(key, Ed25519PublicKey):
            raise ProofError("public key is not an Ed25519 key")
        if name is None:
            raise ProofError("a PEM public key carries no name; pass the log origin as well")
        return NoteVerifier(name, key)
    return NoteVerifier.from_vkey(text)


def load_or_create_signing_key(path: Path, name: str) -> NoteSigner:
    """Load the Ed25519 signing key at ``path``, creating it (mode 0600) on first use.

    Refuses a key file that group or others can read or write, like ssh does.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_signing_key(path, name)
    except OSError as e:
        raise KeyFileError(f"cannot create signing key {path}: {e.strerror}") from e
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return NoteSigner(name, key)


def _load_signing_key(path: Path, name: str) -> NoteSigner:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"signing key {path} is accessible by group/others (mode {stat.filemode(mode)});"
                " run: chmod 600 " + str(path)
            )
        data = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read signing key {path}: {e.strerror}") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"signing key {path} is not a PEM private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is not an Ed25519 key")
    return NoteSigner(name, key)
