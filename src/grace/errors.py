"""The one exception tree of Grace.

Every error Grace raises on purpose derives from :class:`GraceError`; each domain has
its own subtree so callers can catch exactly what they can handle::

    GraceError
    ├── ConfigError            settings or configuration files are invalid
    │   └── MeshConfigError    the trigger mesh routing file is invalid (names file and key)
    ├── LedgerError            the audit ledger refused an operation or is unusable
    │   ├── EntryRejected      an entry was not appended (bad payload, size, field); nothing written
    │   ├── LedgerLocked       another process holds the ledger open for writing
    │   ├── LedgerFormatError  the data directory holds something that is not a Grace ledger
    │   ├── KeyFileError       the checkpoint signing key is missing, unreadable or too exposed
    │   └── ProofError         a proof bundle or checkpoint could not be parsed
    ├── MeshError              the trigger mesh refused an event, a subject or a pattern
    │   ├── PatternError       a subject or subscription pattern is malformed (names the problem)
    │   └── EventError         an event or its CloudEvents form is malformed (names the attribute)
    └── GovernanceError        the governance gate could not do what was asked
        ├── PolicyError        a policy set is invalid (names file, policy id and problem)
        ├── ApprovalError      an approval cannot be created or decided (self-approval, expired…)
        ├── AuthenticationError  credentials are missing, malformed, invalid or revoked
        └── GovernanceDenied   a governed function was called and the decision did not allow it
    ├── TrustError             the trust store refused an operation (bad subject, bad outcome)
    ├── VerificationError      code could not be verified (bad input, sandbox unavailable)
    │   └── SandboxError       the sandbox could not be set up or its result read
    ├── DecisionError          the unified decision engine got unusable input
    ├── ImmuneError            the immune kernel refused an operation
    │   ├── PlaybookError      a playbook file is invalid (names file, playbook and key)
    │   └── ExecutorError      a healing executor could not act (the action did not happen)
    ├── MonitorError           a health or metrics monitor was misconfigured or got bad input
    └── BootError              the boot plan is invalid (cycle, missing dependency) or boot failed

A *denial* is never an exception: security decisions return values. An exception means
"could not decide", and the enforcement point turns it into a denial.

Foreign exceptions (``sqlite3``, ``cryptography``, ``rfc8785``, ``orjson``) are wrapped
once, at the adapter that calls them, with ``raise ... from e``.
"""

from __future__ import annotations

__all__ = [
    "ApprovalError",
    "AuthenticationError",
    "BootError",
    "ConfigError",
    "DecisionError",
    "EntryRejected",
    "EventError",
    "ExecutorError",
    "GovernanceDenied",
    "GovernanceError",
    "GraceError",
    "ImmuneError",
    "KeyFileError",
    "LedgerError",
    "LedgerFormatError",
    "LedgerLocked",
    "MeshConfigError",
    "MeshError",
    "MonitorError",
    "PatternError",
    "PlaybookError",
    "PolicyError",
    "ProofError",
    "SandboxError",
    "TrustError",
    "VerificationError",
]


class GraceError(Exception):
    """Root of every error Grace raises on purpose."""


class ConfigError(GraceError):
    """Settings or a configuration file are invalid; the message names the key and the problem."""


class MeshConfigError(ConfigError):
    """The trigger mesh routing file is invalid; the message names the file, key and problem."""


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


class MeshError(GraceError):
    """The trigger mesh refused an event, a subject or a subscription pattern."""


class PatternError(MeshError):
    """A subject or subscription pattern is malformed; the message names it and the problem."""


class EventError(MeshError):
    """An event, or its CloudEvents JSON form, is malformed; the message names the attribute."""


class GovernanceError(GraceError):
    """The governance gate could not do what was asked (never a denial: those are values)."""


class PolicyError(GovernanceError):
    """A policy set is invalid; the message names the file, the policy id and the problem."""


class ApprovalError(GovernanceError):
    """An approval cannot be created, decided or used (unknown, self-approval, decided…)."""


class AuthenticationError(GovernanceError):
    """Credentials are missing, malformed, invalid or revoked (HTTP 401)."""


class GovernanceDenied(GovernanceError):
    """A governed call outside HTTP was not allowed; carries the decision."""

    def __init__(self, message: str, decision: object) -> None:
        super().__init__(message)
        self.decision = decision


class TrustError(GraceError):
    """The trust store refused an operation (unknown outcome kind, bad subject id)."""


class VerificationError(GraceError):
    """Code could not be verified at all (unreadable input); never a verdict."""


class SandboxError(VerificationError):
    """The sandbox could not be set up, or its result could not be read."""


class DecisionError(GraceError):
    """The unified decision engine got input it cannot use (names the input)."""


class ImmuneError(GraceError):
    """The immune kernel refused an operation."""


class PlaybookError(ImmuneError):
    """A playbook file is invalid; the message names the file, the playbook and the key."""


class ExecutorError(ImmuneError):
    """A healing executor could not act; the action did not happen (or is unknown)."""


class MonitorError(GraceError):
    """A health or metrics monitor was misconfigured or got bad input (names it)."""


class BootError(GraceError):
    """The boot plan is invalid (cycle, missing dependency) or a required chunk failed."""
