"""The boot vocabulary: chunks, their statuses, health reports and the boot report.

A :class:`BootChunk` is one step of the Guardian boot (the seed's chunks 0 … 3): a boot
function, an optional validation function the Guardian runs on its result, and how to
treat failure (``can_fail``: degrade or abort). Invalid chunks are unconstructible.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from grace.errors import BootError

__all__ = [
    "BootChunk",
    "BootReport",
    "BootState",
    "ChunkReport",
    "ChunkStatus",
    "HealthIssue",
    "HealthReport",
    "IssueSeverity",
]


class ChunkStatus(StrEnum):
    """Where a chunk is in its boot (the seed's statuses)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    VALIDATING = "validating"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class BootState(StrEnum):
    """The outcome of a whole boot."""

    READY = "ready"
    """Every chunk passed."""
    DEGRADED = "degraded"
    """Only chunks that may fail failed (or were skipped for them); Grace runs without them."""
    FAILED = "failed"
    """A chunk that must not fail failed; started chunks were shut down."""


class IssueSeverity(StrEnum):
    """How bad a health issue is; a critical one fails the chunk."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthIssue:
    """One thing a validator noticed about a chunk."""

    severity: IssueSeverity
    message: str
    validator: str = "guardian"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """A chunk's health as validated: the Guardian fails a chunk with a critical issue."""

    issues: tuple[HealthIssue, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        """No critical issue."""
        return not any(i.severity is IssueSeverity.CRITICAL for i in self.issues)

    @classmethod
    def critical(cls, message: str, *, validator: str = "guardian") -> HealthReport:
        """A report with one critical issue."""
        return cls(
            issues=(
                HealthIssue(severity=IssueSeverity.CRITICAL, message=message, validator=validator),
            )
        )


BootFunction = Callable[[], Awaitable[Any]]
"""Starts the chunk's part; its result (e.g. ``{"status": "online"}``) goes to validation."""
ValidationFunction = Callable[[Any], Awaitable[HealthReport | bool]]
"""The chunk's own health check over its boot result."""
ShutdownFunction = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BootChunk:
    """One step of the Guardian boot."""

    chunk_id: str
    name: str
    priority: float
    """Lower boots first (0 core, 1 mesh, 1.5 production systems, 1.6 validators …)."""
    boot_function: BootFunction
    can_fail: bool = False
    """True: a failure leaves Grace running degraded; False: it aborts the boot."""
    guardian_validates: bool = True
    validation_function: ValidationFunction | None = None
    depends_on: tuple[str, ...] = ()
    timeout_s: float = 30.0
    """Per attempt, boot and validation together."""
    retries: int = 0
    """Further attempts after the first fails."""
    retry_backoff_s: float = 0.5
    """Wait before retry ``n`` is ``retry_backoff_s * 2**(n-1)``."""
    shutdown_function: ShutdownFunction | None = None

    def __post_init__(self) -> None:
        if not self.chunk_id or not self.chunk_id.strip():
            raise BootError("a boot chunk needs a non-empty chunk_id")
        if not math.isfinite(self.priority):
            raise BootError(f"chunk {self.chunk_id!r}: priority must be a finite number")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise BootError(f"chunk {self.chunk_id!r}: timeout_s must be positive")
        if self.retries < 0:
            raise BootError(f"chunk {self.chunk_id!r}: retries must be >= 0")
        if self.retry_backoff_s < 0:
            raise BootError(f"chunk {self.chunk_id!r}: retry_backoff_s must be >= 0")
        if self.chunk_id in self.depends_on:
            raise BootError(f"chunk {self.chunk_id!r} depends on itself")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkReport:
    """What happened to one chunk."""

    chunk_id: str
    name: str
    priority: float
    status: ChunkStatus
    can_fail: bool
    attempts: int = 0
    duration_s: float = 0.0
    issues: tuple[HealthIssue, ...] = ()
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON."""
        return {
            "chunk_id": self.chunk_id,
            "name": self.name,
            "priority": self.priority,
            "status": str(self.status),
            "can_fail": self.can_fail,
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 6),
            "issues": [
                {"severity": str(i.severity), "message": i.message, "validator": i.validator}
                for i in self.issues
            ],
            "error": self.error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BootReport:
    """The whole boot: state, timings and every chunk in boot order."""

    state: BootState
    started_at: _dt.datetime
    duration_s: float
    chunks: tuple[ChunkReport, ...]
    receipt_seq: int | None = None
    """The ledger entry recording this report (None when no ledger was given)."""

    @property
    def degraded_chunks(self) -> tuple[str, ...]:
        """Ids of chunks that failed or were skipped."""
        return tuple(
            c.chunk_id for c in self.chunks if c.status in (ChunkStatus.FAILED, ChunkStatus.SKIPPED)
        )

    def chunk(self, chunk_id: str) -> ChunkReport:
        """One chunk's report; :class:`KeyError` if unknown."""
        for c in self.chunks:
            if c.chunk_id == chunk_id:
                return c
        raise KeyError(chunk_id)

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON (what the ledger and ``/v1/boot`` hold)."""
        return {
            "state": str(self.state),
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 6),
            "chunks": [c.as_json() for c in self.chunks],
            "receipt_seq": self.receipt_seq,
        }
