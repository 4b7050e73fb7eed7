"""The one exception tree of Grace.

Every error Grace raises on purpose derives from :class:`GraceError`; each domain has
its own subtree so callers can catch exactly what they can handle::

    GraceError
    ├── ConfigError            settings or configuration files are invalid
    └── LedgerError            the audit ledger refused an operation or is unusable
        ├── EntryRejected      an entry was not appended (bad payload, size, field); nothing written
        ├── LedgerLocked       another process holds the ledger open for writing
        ├── LedgerFormatError  the data directory holds something that is not a Grace ledger
        ├── KeyFileError       the checkpoint signing key is missing, unreadable or too exposed
        └── ProofError         a proof bundle or checkpoint could not be parsed

A *denial* is never an exception: security decisions return values. An exception means
"could not decide", and the enforcement point turns it into a denial.

Foreign exceptions (``sqlite3``, ``cryptography``, ``rfc8785``) are wrapped once, at the
adapter that calls them, with ``raise ... from e``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EntryRejected",
    "GraceError",
    "KeyFileError",
    "LedgerError",
    "LedgerFormatError",
    "LedgerLocked",
    "ProofError",
]


class GraceError(Exception):
    """Root of every error Grace raises on purpose."""


class ConfigError(GraceError):
    """Settings or a configuration file are invalid; the message names the key and the problem."""


class LedgerError(GraceError):
    """The audit ledger refused an operation or cannot be used."""


class EntryRejected(LedgerError):
    """An entry was rejected before anything was written (payload, size or field problem)."""


class LedgerLocked(LedgerError):
    """Another process has the ledger open for writing."""


class LedgerFormatError(LedgerError):
    """The data directory holds something that is not a Grace ledger of a known version."""


class KeyFileError(LedgerError):
    """The checkpoint signing key cannot be used (unreadable, malformed or readable by others)."""


class ProofError(LedgerError):
    """A proof bundle, checkpoint note or public key could not be parsed."""
