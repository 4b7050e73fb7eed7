"""The Guardian boot: prioritised, validated chunks with timeouts, retries, degrade or
abort, and reverse-order shutdown."""

from __future__ import annotations

from grace.boot.model import (
    BootChunk,
    BootReport,
    BootState,
    ChunkReport,
    ChunkStatus,
    HealthIssue,
    HealthReport,
    IssueSeverity,
)
from grace.boot.orchestrator import BootAborted, BootOrchestrator, Validator

__all__ = [
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
]
