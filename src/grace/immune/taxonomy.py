"""The immune kernel's vocabulary: anomaly types, severities, healing actions, anomalies and
incidents (names and values from VOCABULARY.md).

Invariants checked in ``__post_init__`` (an invalid value cannot be constructed):

* an :class:`Anomaly` names a known type and severity, a resource matching
  :data:`RESOURCE_PATTERN` (resources end up in argv elements, URLs and control keys, so
  the alphabet is narrow and a leading ``-`` is refused), a score in [0, 1] or none, and an
  aware UTC detection time;
* an :class:`Incident` groups anomalies of one ``(resource, anomaly type)``; its severity is
  the highest seen, its counters never go negative, and ``resolved_at`` is set exactly when
  it is :attr:`IncidentState.RESOLVED`.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "RESOURCE_PATTERN",
    "SECURITY_TYPES",
    "Anomaly",
    "AnomalyType",
    "HealingAction",
    "Incident",
    "IncidentState",
    "Severity",
    "check_resource",
]

RESOURCE_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@=-]{0,199}")
"""What a resource (component) name may look like: no spaces, quotes or shell syntax."""


class AnomalyType(StrEnum):
    """The 18 kinds of anomaly the kernel knows."""

    LATENCY_SPIKE = "latency_spike"
    THROUGHPUT_DROP = "throughput_drop"
    ERROR_RATE_INCREASE = "error_rate_increase"
    MEMORY_LEAK = "memory_leak"
    CPU_SPIKE = "cpu_spike"
    DISK_FULL = "disk_full"
    CONNECTION_POOL_EXHAUSTION = "connection_pool_exhaustion"
    DRIFT_DETECTED = "drift_detected"
    PATTERN_DEVIATION = "pattern_deviation"
    HTM_ANOMALY = "htm_anomaly"
    INJECTION_ATTEMPT = "injection_attempt"
    UNAUTHORIZED_ACCESS = "unauthorized_access"
    DATA_EXFILTRATION = "data_exfiltration"
    GUARDRAIL_BYPASS = "guardrail_bypass"
    SERVICE_DOWN = "service_down"
    DEPENDENCY_FAILURE = "dependency_failure"
    DEADLOCK_DETECTED = "deadlock_detected"
    CASCADE_FAILURE = "cascade_failure"


SECURITY_TYPES: Final = frozenset(
    {
        AnomalyType.INJECTION_ATTEMPT,
        AnomalyType.UNAUTHORIZED_ACCESS,
        AnomalyType.DATA_EXFILTRATION,
        AnomalyType.GUARDRAIL_BYPASS,
    }
)
"""The types a ``security.event`` may carry."""


class Severity(StrEnum):
    """How bad an anomaly is; ordered ``info`` < … < ``critical``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info … 4 for critical."""
        return _SEVERITY_ORDER.index(self)

    def at_least(self, other: Severity) -> Severity:
        """The higher of the two."""
        return self if self.rank >= other.rank else other


_SEVERITY_ORDER: Final = (
    Severity.INFO,
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)


class HealingAction(StrEnum):
    """The 12 healing actions; governed as ``avn:<value>``."""

    RESTART_SERVICE = "restart_service"
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    ROLLBACK = "rollback"
    CIRCUIT_BREAKER = "circuit_breaker"
    RATE_LIMIT = "rate_limit"
    KILL_CONNECTION = "kill_connection"
    CLEAR_CACHE = "clear_cache"
    GARBAGE_COLLECT = "garbage_collect"
    ESCALATE_TO_HUMAN = "escalate_to_human"
    QUARANTINE_COMPONENT = "quarantine_component"
    HARDEN_SECURITY = "harden_security"


def check_resource(value: object) -> str:
    """Return ``value`` if it is a valid resource name, else raise ValueError naming it."""
    if not isinstance(value, str) or not RESOURCE_PATTERN.fullmatch(value):
        shown = repr(value)[:80]
        raise ValueError(
            f"resource {shown} must match {RESOURCE_PATTERN.pattern} "
            "(letters, digits and _.:/@=- only, at most 200 characters)"
        )
    return value


def _check_aware(name: str, when: _dt.datetime | None) -> None:
    if when is not None and (when.tzinfo is None or when.utcoffset() != _dt.timedelta(0)):
        raise ValueError(f"{name} must be timezone-aware UTC, got {when!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """One observation that something is wrong with a resource."""

    anomaly_id: str
    anomaly_type: AnomalyType
    severity: Severity
    resource: str
    detected_at: _dt.datetime
    source: str = "unknown"
    """Who reported it: the mesh publisher identity, never a self-declared name."""
    score: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    """JSON-safe facts from the reporter (baseline, current value, series, probe detail)."""
    event_id: str | None = None

    def __post_init__(self) -> None:
        if not self.anomaly_id:
            raise ValueError("an anomaly needs an id")
        AnomalyType(self.anomaly_type)
        Severity(self.severity)
        check_resource(self.resource)
        _check_aware("detected_at", self.detected_at)
        if self.score is not None and not (
            isinstance(self.score, int | float)
            and math.isfinite(self.score)
            and 0.0 <= self.score <= 1.0
        ):
            raise ValueError(f"anomaly score must be within [0, 1], got {self.score!r}")

    @property
    def key(self) -> tuple[str, AnomalyType]:
        """What incidents group by."""
        return (self.resource, self.anomaly_type)


class IncidentState(StrEnum):
    """Where an incident stands (``open`` → ``healing`` → ``resolved`` | ``escalated``;
    any → ``closed``)."""

    OPEN = "open"
    """Admitted, no healing under way."""
    HEALING = "healing"
    """A playbook is running; new alerts for it are held."""
    RESOLVED = "resolved"
    """A healing step's verification passed (or the resource recovered on its own)."""
    ESCALATED = "escalated"
    """Handed to a human; alerts are merged into it, nothing is healed automatically."""
    CLOSED = "closed"
    """Closed by a human or expired after its dedup window."""

    @property
    def active(self) -> bool:
        """Open, healing or escalated."""
        return self in (IncidentState.OPEN, IncidentState.HEALING, IncidentState.ESCALATED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    """Anomalies of one resource and type, grouped within a window."""

    incident_id: str
    resource: str
    anomaly_type: AnomalyType
    severity: Severity
    state: IncidentState
    opened_at: _dt.datetime
    last_seen_at: _dt.datetime
    first_anomaly_id: str
    anomaly_count: int = 1
    """Anomalies merged into this incident (the first included)."""
    held_count: int = 0
    """Alerts that arrived while healing ran (held, not acted upon)."""
    healing_runs: int = 0
    playbook: str | None = None
    resolved_at: _dt.datetime | None = None
    reason: str = ""
    """Why it is in its state (resolution, escalation, closing)."""
    approval_id: str | None = None
    """An approval request opened by governance for a step of this incident."""

    def __post_init__(self) -> None:
        check_resource(self.resource)
        for name in ("opened_at", "last_seen_at", "resolved_at"):
            _check_aware(name, getattr(self, name))
        if min(self.anomaly_count, self.held_count, self.healing_runs) < 0:
            raise ValueError("incident counters cannot be negative")
        if (self.resolved_at is not None) != (self.state is IncidentState.RESOLVED):
            raise ValueError("resolved_at is set exactly when the incident is resolved")

    @property
    def key(self) -> tuple[str, AnomalyType]:
        """The ``(resource, anomaly type)`` it groups."""
        return (self.resource, self.anomaly_type)

    @property
    def time_to_recovery_s(self) -> float | None:
        """Seconds from opening to resolution, when resolved."""
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.opened_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (for the ledger, events and APIs)."""
        return {
            "incident_id": self.incident_id,
            "resource": self.resource,
            "anomaly_type": str(self.anomaly_type),
            "severity": str(self.severity),
            "state": str(self.state),
            "opened_at": self.opened_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "first_anomaly_id": self.first_anomaly_id,
            "anomaly_count": self.anomaly_count,
            "held_count": self.held_count,
            "healing_runs": self.healing_runs,
            "playbook": self.playbook,
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
            "reason": self.reason,
            "approval_id": self.approval_id,
        }
