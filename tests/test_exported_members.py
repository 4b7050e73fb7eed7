"""The public surface is curated: every package exports exactly its __all__."""

from __future__ import annotations

import importlib

import pytest

import grace

PACKAGES = {
    "grace": ["GraceSettings", "__version__"],
    "grace.ledger": [
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
    ],
    "grace.errors": [
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
    ],
    "grace.boot": [
        "BootAborted",
        "BootChunk",
        "BootOrchestrator",
        "BootReport",
        "BootState",
        "ChunkReport",
        "ChunkStatus",
        "HealthIssue",
        "HealthReport",
        "IssueSeverity",
        "Validator",
    ],
    "grace.trust": [
        "Dimension",
        "Evidence",
        "TrustConfig",
        "TrustLevel",
        "TrustScore",
        "TrustStore",
    ],
    "grace.immune.detectors": [
        "Detector",
        "EnsembleDetector",
        "ZScoreDetector",
        "available_detectors",
        "create_detector",
    ],
    "grace.testing": ["FakeClock"],
    "grace.mesh": [
        "BlockReason",
        "DeadLetter",
        "DeadLetterStore",
        "Deliver",
        "EmitResult",
        "EventBus",
        "EventPriority",
        "EventSpec",
        "GovernanceValidator",
        "Handler",
        "MemoryTransport",
        "MeshConfig",
        "MeshMetrics",
        "MeshSettings",
        "Publisher",
        "RoutingRules",
        "SubjectTrie",
        "Subscription",
        "Transport",
        "TriggerEvent",
        "TriggerMesh",
        "TrustScorer",
        "load_mesh_config",
        "new_event_id",
        "parse_mesh_config",
        "validate_pattern",
        "validate_subject",
    ],
}


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_package_exports_exactly_its_public_names(name: str) -> None:
    """__all__ is the agreed list and every name in it resolves."""
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(PACKAGES[name])
    for attr in module.__all__:
        assert getattr(module, attr) is not None


def test_every_grace_error_derives_from_grace_error() -> None:
    """The exception tree has one root."""
    from grace import errors

    for attr in errors.__all__:
        assert issubclass(getattr(errors, attr), errors.GraceError)
    assert grace.__version__
