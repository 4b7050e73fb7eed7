"""The tamper-evident audit ledger: hash chain, RFC 6962 Merkle tree, signed checkpoints.

>>> from grace.ledger import Ledger, merkle
>>> # ledger = await Ledger.open(data_dir); r = await ledger.append(...); r.seq
"""

from grace.ledger import merkle
from grace.ledger.audit import (
    AuditSink,
    Subsystem,
    log_anomaly_detected,
    log_constitutional_violation,
    log_decision,
    log_escalation,
    log_healing_action,
    log_security_violation,
    log_verification_result,
)
from grace.ledger.bundle import BundleCheck, ProofBundle, verify_bundle
from grace.ledger.checkpoint import Checkpoint, NoteSigner, NoteVerifier, load_verifier
from grace.ledger.entry import Entry, EntryPage, Receipt, VerifyReport
from grace.ledger.ledger import Ledger, LedgerConfig

__all__ = [
    "AuditSink",
    "BundleCheck",
    "Checkpoint",
    "Entry",
    "EntryPage",
    "Ledger",
    "LedgerConfig",
    "NoteSigner",
    "NoteVerifier",
    "ProofBundle",
    "Receipt",
    "Subsystem",
    "VerifyReport",
    "load_verifier",
    "log_anomaly_detected",
    "log_constitutional_violation",
    "log_decision",
    "log_escalation",
    "log_healing_action",
    "log_security_violation",
    "log_verification_result",
    "merkle",
    "verify_bundle",
]
